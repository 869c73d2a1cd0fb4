// The bound in the student's hand: one triplet in 2-D whose points can be dragged, with both sides
// of the inequality, the two centres and their radii recomputed in the browser at every move.
//
//     [d(a,p) - d(a,n) + m]+  <=  [d(a,c_a) - d(a,c_n) + m]+ + R_a + R_n
//
// The numbers use fatviz's own definitions (fatviz/centroids.py, fatviz/bound_view.py): centres
// from the raw or unit-length members, projected onto the circle or not, distances in the
// option's anchor space, a class's radius the farthest member from its centre. The exported
// functions are checked against fatviz on the same points (tests/test_bound_drag.py).
//
// Data in:  {points (N x 2 raw), labels, names, colours, members, centre (the option's two
//            normalisations), margin, a, p, n, title, presentation}
// Out:      state "moved" {points, a, p, n} when a drag ends or the triplet changes here; null after Reset.
import {linkStyle} from "./page_style.js";

const EPS = 1e-12; // below this norm a vector is zero and stays zero (fatviz/centroids.py)
const SIZE = 600; // the drawing's own units: it scales to the page's width

export function unit(v) {
  const n = Math.hypot(v[0], v[1]);
  return n <= EPS ? [0, 0] : [v[0] / n, v[1] / n];
}

function dist(u, v) {
  return Math.hypot(u[0] - v[0], u[1] - v[1]);
}

// Points in the option's anchor space, and every class's centre and radius there.
export function optionSpace(points, labels, members, centre) {
  const k = Math.max(...labels) + 1;
  const sums = Array.from({length: k}, () => [0, 0]);
  const counts = new Array(k).fill(0);
  points.forEach((q, i) => {
    const v = members ? unit(q) : q;
    sums[labels[i]][0] += v[0];
    sums[labels[i]][1] += v[1];
    counts[labels[i]] += 1;
  });
  const centres = sums.map((s, c) => {
    const mean = counts[c] ? [s[0] / counts[c], s[1] / counts[c]] : [0, 0];
    return centre ? unit(mean) : mean;
  });
  const anchors = members || centre ? points.map(unit) : points.map((q) => [q[0], q[1]]);
  const radii = new Array(k).fill(0);
  anchors.forEach((x, i) => { radii[labels[i]] = Math.max(radii[labels[i]], dist(x, centres[labels[i]])); });
  return {anchors, centres, radii};
}

// Every number of both sides of the bound for triplet (a, p, n).
export function boundTerms(points, labels, a, p, n, members, centre, margin) {
  const {anchors: x, centres, radii} = optionSpace(points, labels, members, centre);
  const ya = labels[a];
  const yn = labels[n];
  const t = {anchors: x, centres, radii, margin, d_ap: dist(x[a], x[p]), d_an: dist(x[a], x[n]),
             d_a_ca: dist(x[a], centres[ya]), d_a_cn: dist(x[a], centres[yn]), radius_a: radii[ya], radius_n: radii[yn]};
  t.loss = Math.max(0, t.d_ap - t.d_an + margin);
  t.point_to_set = Math.max(0, t.d_a_ca - t.d_a_cn + margin);
  t.bound = t.point_to_set + t.radius_a + t.radius_n;
  return t;
}

// (a, p, n): the farthest positive and nearest negative of the anchor; with anchor null, the
// anchor whose farthest positive is farthest beyond its nearest negative (fatviz's hardest_triplet).
export function hardestTriplet(points, labels, members, centre, anchor = null) {
  const x = optionSpace(points, labels, members, centre).anchors;
  const best = (i) => {
    let p = -1, n = -1, dp = -Infinity, dn = Infinity;
    x.forEach((q, j) => {
      const d = dist(x[i], q);
      if (labels[j] === labels[i] && j !== i && d > dp) { dp = d; p = j; }
      if (labels[j] !== labels[i] && d < dn) { dn = d; n = j; }
    });
    return {p, n, hardness: p >= 0 && n >= 0 ? dp - dn : -Infinity};
  };
  if (anchor === null) {
    let top = -Infinity;
    x.forEach((_, i) => { const h = best(i).hardness; if (h > top) { top = h; anchor = i; } });
  }
  const {p, n} = best(anchor);
  return [anchor, p, n];
}

const NS = "http://www.w3.org/2000/svg";

function el(parent, tag, attrs = {}) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  parent.appendChild(node);
  return node;
}

function fmt(v) {
  return v.toFixed(3);
}

function build(root, setState) {
  linkStyle("fvz-bound-css", new URL("./bound_drag.css", import.meta.url).href);
  root.innerHTML = "";
  const box = document.createElement("div");
  box.className = "fvz-bound";
  box.innerHTML = `<div class="title"></div><svg viewBox="0 0 ${SIZE} ${SIZE}"></svg>
    <div class="sides"></div>
    <div class="bar"><button type="button" class="hardest">Hardest triplet</button>
      <button type="button" class="reset">Reset the points</button>
      <span class="hint">Drag any point: a, p, n or a class member.</span></div>`;
  root.appendChild(box);
  const st = {root, box, setState, svg: box.querySelector("svg"), sides: box.querySelector(".sides"),
              title: box.querySelector(".title"), data: null, points: null, a: 0, p: 0, n: 0, drag: null, key: null};
  box.querySelector(".hardest").addEventListener("click", () => {
    [st.a, st.p, st.n] = hardestTriplet(st.points, st.data.labels, st.data.members, st.data.centre);
    render(st);
    report(st);
  });
  box.querySelector(".reset").addEventListener("click", () => {
    st.points = st.data.points.map((q) => q.slice());
    [st.a, st.p, st.n] = [st.data.a, st.data.p, st.data.n];
    fit(st);
    render(st);
    st.setState("moved", null);
  });
  st.svg.addEventListener("pointermove", (ev) => {
    if (st.drag === null) return;
    st.points[st.drag] = toData(st, ev);
    render(st);
  });
  const release = () => {
    if (st.drag === null) return;
    st.drag = null;
    report(st);
  };
  st.svg.addEventListener("pointerup", release);
  st.svg.addEventListener("pointercancel", release);
  return st;
}

function report(st) {
  st.setState("moved", {points: st.points, a: st.a, p: st.p, n: st.n});
}

// The drawing's data range: for normalised options the unit circle's square, widened (up to
// MAX_HALF) so that the starting triplet's two radius circles are whole; else the points' square
// with room around them. Fixed while dragging, so the picture does not slide.
const MAX_HALF = 2.2; // wider, and the unit circle's points would be too small to grab
export function viewFor(points, labels, a, p, n, members, centre, margin) {
  if (members || centre) {
    const t = boundTerms(points, labels, a, p, n, members, centre, margin);
    let half = 1.45;
    for (const [c, r] of [[labels[a], t.radius_a], [labels[n], t.radius_n]]) {
      const [x, y] = t.centres[c];
      half = Math.max(half, Math.abs(x) + r + 0.05, Math.abs(y) + r + 0.05);
    }
    half = Math.min(half, MAX_HALF);
    return {x0: -half, y0: -half, span: 2 * half};
  }
  const xs = points.map((q) => q[0]);
  const ys = points.map((q) => q[1]);
  const span = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys), 1e-6) * 1.3;
  return {x0: (Math.max(...xs) + Math.min(...xs) - span) / 2, y0: (Math.max(...ys) + Math.min(...ys) - span) / 2, span};
}

function fit(st) {
  const d = st.data;
  st.view = viewFor(st.points, d.labels, st.a, st.p, st.n, d.members, d.centre, d.margin);
}

// Where a label goes: the first of a few spots around its point that keeps clear of the labels
// placed so far (a and n drawn on top of each other were unreadable). Spots start away from the
// drawing's middle, so a label on the unit circle sits outside it.
export function placeLabel(placed, cx, cy, size) {
  const out = Math.atan2(cy - SIZE / 2, cx - SIZE / 2);
  const gap = 1.1 * size;
  let best = null;
  for (const turn of [0, 0.9, -0.9, 1.8, -1.8, Math.PI]) {
    const x = cx + Math.cos(out + turn) * gap;
    const y = cy + Math.sin(out + turn) * gap;
    const clear = placed.every(([u, v]) => Math.hypot(u - x, v - y) >= gap);
    if (!best || clear) best = [x, y];
    if (clear) break;
  }
  placed.push(best);
  return best;
}

function px(st, v) {
  return [((v[0] - st.view.x0) / st.view.span) * SIZE, SIZE - ((v[1] - st.view.y0) / st.view.span) * SIZE];
}

function toData(st, ev) {
  const box = st.svg.getBoundingClientRect();
  const sx = ((ev.clientX - box.left) / box.width) * SIZE;
  const sy = ((ev.clientY - box.top) / box.height) * SIZE;
  return [st.view.x0 + (sx / SIZE) * st.view.span, st.view.y0 + ((SIZE - sy) / SIZE) * st.view.span];
}

function render(st) {
  const d = st.data;
  const t = boundTerms(st.points, d.labels, st.a, st.p, st.n, d.members, d.centre, d.margin);
  const scale = SIZE / st.view.span;
  const svg = st.svg;
  svg.replaceChildren();
  const big = d.presentation ? 1.3 : 1;
  if (d.members || d.centre) {
    const [cx, cy] = px(st, [0, 0]);
    el(svg, "circle", {cx, cy, r: scale, fill: "none", stroke: "#DDDDDD", "stroke-width": 1.5});
  }
  const ya = d.labels[st.a];
  const yn = d.labels[st.n];
  for (const [c, r] of [[ya, t.radius_a], [yn, t.radius_n]]) { // the two radii
    const [cx, cy] = px(st, t.centres[c]);
    el(svg, "circle", {cx, cy, r: r * scale, fill: "none", stroke: d.colours[c], "stroke-width": 2.5, "stroke-dasharray": "8 6"});
  }
  const line = (u, v, colour, width, dash) => {
    const [x1, y1] = px(st, u);
    const [x2, y2] = px(st, v);
    el(svg, "line", {x1, y1, x2, y2, stroke: colour, "stroke-width": width, ...(dash ? {"stroke-dasharray": dash} : {})});
  };
  const x = t.anchors;
  const placed = []; // label spots so far (the roles', then the centres')
  line(x[st.a], t.centres[ya], "#000000", 2, "3 5");
  line(x[st.a], t.centres[yn], "#C0392B", 2, "3 5");
  line(x[st.a], x[st.p], "#000000", 4);
  line(x[st.a], x[st.n], "#C0392B", 4);
  x.forEach((q, i) => { // every point, draggable
    const [cx, cy] = px(st, q);
    const role = i === st.a ? "a" : i === st.p ? "p" : i === st.n ? "n" : "";
    const mark = el(svg, "circle", {cx, cy, r: (role ? 10 : 7) * big, class: "pt", "data-index": i,
                                    fill: role === "n" ? "#fff" : d.colours[d.labels[i]], "fill-opacity": role ? 1 : 0.55,
                                    stroke: role === "n" ? d.colours[d.labels[i]] : role ? "#000" : "none",
                                    "stroke-width": role === "n" ? 4 : 2});
    mark.addEventListener("pointerdown", (ev) => {
      st.drag = i;
      st.svg.setPointerCapture(ev.pointerId);
      ev.preventDefault();
    });
  });
  for (const [i, role] of [[st.a, "a"], [st.p, "p"], [st.n, "n"]]) { // after every mark: they stay on top
    const [lx, ly] = placeLabel(placed, ...px(st, x[i]), 24 * big);
    const label = el(svg, "text", {x: lx, y: ly, "font-size": 24 * big, "font-weight": 700, "text-anchor": "middle",
                                   "dominant-baseline": "central", "paint-order": "stroke", stroke: "#fff",
                                   "stroke-width": 4});
    label.textContent = role;
  }
  for (const [c, name] of [[ya, "a"], [yn, "n"]]) { // the two centres
    const [cx, cy] = px(st, t.centres[c]);
    const s = 9 * big;
    for (const [dx, dy] of [[s, s], [s, -s]]) {
      el(svg, "line", {x1: cx - dx, y1: cy - dy, x2: cx + dx, y2: cy + dy, stroke: "#000", "stroke-width": 5});
      el(svg, "line", {x1: cx - dx, y1: cy - dy, x2: cx + dx, y2: cy + dy, stroke: d.colours[c], "stroke-width": 3});
    }
    const [lx, ly] = placeLabel(placed, cx, cy, 26 * big);
    const label = el(svg, "text", {x: lx, y: ly, "font-size": 20 * big, "text-anchor": "middle",
                                   "dominant-baseline": "central", "paint-order": "stroke", stroke: "#fff",
                                   "stroke-width": 4});
    label.textContent = `c_${name}`;
  }
  const holds = t.loss <= t.bound + 1e-12;
  st.sides.innerHTML =
    `[d(a,p) − d(a,n) + m]<sub>+</sub> = [${fmt(t.d_ap)} − ${fmt(t.d_an)} + ${fmt(t.margin)}]<sub>+</sub> = <b>${fmt(t.loss)}</b><br>` +
    `≤ [d(a,c<sub>a</sub>) − d(a,c<sub>n</sub>) + m]<sub>+</sub> + R<sub>a</sub> + R<sub>n</sub> = ` +
    `[${fmt(t.d_a_ca)} − ${fmt(t.d_a_cn)} + ${fmt(t.margin)}]<sub>+</sub> + ${fmt(t.radius_a)} + ${fmt(t.radius_n)} = <b>${fmt(t.bound)}</b><br>` +
    `<span class="${holds ? "holds" : "fails"}">${holds ? "✓ holds" : "✗ violated"}: loss ${fmt(t.loss)} ≤ bound ${fmt(t.bound)}` +
    ` (gap ${fmt(t.bound - t.loss)})</span>`;
  st.root.dataset.loss = String(t.loss);
  st.root.dataset.bound = String(t.bound);
  st.root.dataset.triplet = `${st.a},${st.p},${st.n}`;
}

export default function (component) {
  const {data, parentElement, setStateValue} = component;
  let st = parentElement.__fatvizBound;
  if (!st) {
    st = build(parentElement, setStateValue);
    parentElement.__fatvizBound = st;
  }
  st.setState = setStateValue;
  if (!data) return undefined;
  const key = JSON.stringify([data.points, data.labels, data.members, data.centre, data.margin, data.a, data.p, data.n]);
  st.data = data;
  st.box.classList.toggle("present", !!data.presentation);
  st.title.textContent = data.title || "";
  if (key !== st.key && st.drag === null) { // new points or triplet from the page (a drag's own report comes back equal)
    st.key = key;
    st.points = data.points.map((q) => q.slice());
    [st.a, st.p, st.n] = [data.a, data.p, data.n];
    fit(st);
  }
  render(st);
  return undefined;
}
