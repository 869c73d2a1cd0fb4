// The live embedding chart: one plotly.js chart per view, in place for the page's lifetime.
//
// Python (pages/ui/live_chart.py, payload from fatviz.figures.embedding.live_chart_data) sends
// only what this chart lacks: the figure once (traces, colours, layout), then each new epoch as
// a frame. The chart appends frames as they arrive and shows each one (a short step per epoch
// when several arrive at once), lets the student Play, pause and scrub while training goes on,
// and keeps their zoom and pan across updates. The finished animation is this same chart.
//
// Data in:  {sig, figure | null, first, frames, epochs, ranges?, panels, live, show, selectable,
//            presentation, frame_ms, transition_ms, step_ms}
// Out:      trigger "need" {sig, have}   this chart holds `have` frames of `sig`: send the rest
//           trigger "picked" {panel, point}   a click on a point (when selectable)
// For tests and benchmarks the root element carries data-frames (held), data-epoch (shown),
// data-shown (distinct epochs shown so far), data-updates (data payloads applied), data-live, and
// data-drawn and data-moved (frames plotly redrew in full, frames whose points were moved).
import {linkStyle} from "./page_style.js";

const MIN_HEIGHT = 260; // px: below this a chart's panels are too small to read from the back row
const PLOTLY_URL = new URL("./plotly.min.js", import.meta.url).href;
const TYPED = {f4: Float32Array, f8: Float64Array, i1: Int8Array, u1: Uint8Array, i2: Int16Array,
               u2: Uint16Array, i4: Int32Array, u4: Uint32Array};
const CONFIG = {displaylogo: false, scrollZoom: true, responsive: true,
                toImageButtonOptions: {format: "png", scale: 2, filename: "fatviz-embedding"}};
const AXIS = /^[xy]axis\d*$/;
const SYNC_MS = 600; // a still chart is redrawn by plotly this long after its points were last moved

// This chart's own plotly.js (the version plotly.py wrote the figure for), loaded once per page.
function loadPlotly() {
  if (!window.__fatvizPlotly) {
    window.__fatvizPlotly = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = PLOTLY_URL;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => {
        window.__fatvizPlotly = null;
        reject(new Error(`plotly.js did not load from ${PLOTLY_URL}`));
      };
      document.head.appendChild(script);
    });
  }
  return window.__fatvizPlotly;
}

// plotly's typed-array JSON ({dtype, bdata}) to a typed array, once, wherever it appears.
function decode(value) {
  if (Array.isArray(value)) return value.map(decode);
  if (value && typeof value === "object") {
    if (typeof value.bdata === "string" && TYPED[value.dtype]) {
      const bytes = Uint8Array.from(atob(value.bdata), (c) => c.charCodeAt(0));
      return new TYPED[value.dtype](bytes.buffer);
    }
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = decode(v);
    return out;
  }
  return value;
}

function build(root, setTrigger) {
  linkStyle("fvz-live-css", new URL("./live_chart.css", import.meta.url).href);
  root.innerHTML = "";
  const box = document.createElement("div");
  box.className = "fvz-live";
  box.innerHTML = `
    <div class="fvz-plot"></div>
    <div class="fvz-bar">
      <button type="button" class="fvz-play" title="Play every epoch trained so far">▶ Play</button>
      <input type="range" class="fvz-slider" min="0" max="0" step="1" value="0" aria-label="Epoch">
      <span class="fvz-epoch"></span>
      <span class="fvz-badge" title="The chart adds each epoch as it is trained">● training</span>
    </div>
    <div class="fvz-note"></div>`;
  root.appendChild(box);
  const st = {
    root, box, setTrigger, plot: box.querySelector(".fvz-plot"), play: box.querySelector(".fvz-play"),
    slider: box.querySelector(".fvz-slider"), label: box.querySelector(".fvz-epoch"),
    badge: box.querySelector(".fvz-badge"), note: box.querySelector(".fvz-note"),
    sig: null, figure: null, frames: [], epochs: [], ranges: null, current: -1, follow: true,
    playing: null, stepping: null, zoom: {}, marks: null, sync: null, busy: false, sized: false, shown: new Set(), updates: 0, asked: null, lastShow: null,
    plotly: null, drawn: false, live: false, selectable: false, frameMs: 450, transitionMs: 300, stepMs: 120,
  };
  st.play.addEventListener("click", () => (st.playing ? pause(st) : play(st)));
  st.slider.addEventListener("input", () => {
    pause(st);
    const i = Number(st.slider.value);
    st.follow = i === st.frames.length - 1;
    show(st, i);
  });
  return st;
}

function last(st) {
  return st.frames.length - 1;
}

function pause(st) {
  if (st.playing) clearInterval(st.playing);
  st.playing = null;
  st.play.textContent = "▶ Play";
}

function play(st) {
  stopStepping(st);
  if (st.current >= last(st)) show(st, 0);
  st.follow = false;
  st.play.textContent = "❚❚ Pause";
  st.playing = setInterval(() => {
    if (st.current < last(st)) show(st, st.current + 1, true);
    else if (!st.live) pause(st); // the whole run shown; while training, Play waits for the next epoch
  }, st.frameMs);
}

function stopStepping(st) {
  if (st.stepping) clearInterval(st.stepping);
  st.stepping = null;
}

// Following the training: show every new epoch in turn, one short step each.
function catchUp(st) {
  if (st.stepping || st.playing || !st.follow || st.current >= last(st)) return;
  show(st, st.current + 1);
  if (st.current >= last(st)) return;
  st.stepping = setInterval(() => {
    if (!st.follow || st.playing || st.current >= last(st)) return stopStepping(st);
    show(st, st.current + 1);
  }, st.stepMs);
}

function axesOf(layout) {
  return Object.keys(layout).filter((k) => AXIS.test(k));
}

function still(st) {
  if (st.plotly && st.figure) st.plotly.react(st.plot, st.figure.data, st.figure.layout, {...CONFIG, staticPlot: true});
}

function axisKey(ref) {
  return `${ref[0]}axis${ref.slice(1)}`; // "x2" -> "xaxis2"
}

// The axis ranges at frame i: the student's zoom where they zoomed, else the frame's (or, with
// fixed axes, the one range over every epoch), widened along a panel's longer side so that a
// unit is as long across as up (the chart squares panels itself: plotly's scaleanchor widened
// some panels' ranges and shrank others' boxes, so panels of one figure differed in size).
function rangesFor(st, frame) {
  const out = {};
  for (const key of axesOf(st.figure.layout)) {
    const range = st.zoom[key] || (st.ranges || frame.layout)[key]?.range;
    if (range) out[key] = range.slice();
  }
  const full = st.plot._fullLayout;
  for (const xk of Object.keys(out).filter((k) => k[0] === "x")) {
    const yk = `y${xk.slice(1)}`;
    const w = full?.[xk]?._length;
    const h = full?.[yk]?._length;
    if (!w || !h || !out[yk] || st.zoom[xk] || st.zoom[yk]) continue;
    const [x0, x1] = out[xk];
    const [y0, y1] = out[yk];
    const unit = Math.max((x1 - x0) / w, (y1 - y0) / h); // data units per pixel, the larger
    out[xk] = [(x0 + x1 - unit * w) / 2, (x0 + x1 + unit * w) / 2];
    out[yk] = [(y0 + y1 - unit * h) / 2, (y0 + y1 + unit * h) / 2];
  }
  return out;
}

// The chart's height for square panels at its present width: the figure's own height is the
// most it takes (a 2x2 grid on a wide screen), a narrow page gets a shorter chart instead of
// tall thin panels. A legend placed in pixels from the top (yref "container") stays where it was.
function fitHeight(st, layout) {
  const width = st.plot.clientWidth;
  const most = st.figure.layout.height;
  const xd = layout.xaxis?.domain;
  const yd = layout.yaxis?.domain;
  if (!width || !most || !xd || !yd) return;
  const m = {l: 80, r: 80, t: 100, b: 80, ...(layout.margin || {})};
  const panel = (width - m.l - m.r) * (xd[1] - xd[0]); // one panel's width in pixels
  const height = Math.round(Math.min(most, Math.max(MIN_HEIGHT, m.t + m.b + panel / (yd[1] - yd[0]))));
  layout.height = height;
  const legend = st.figure.layout.legend;
  if (legend && legend.yref === "container" && legend.yanchor === "top" && typeof legend.y === "number") {
    layout.legend = {...legend, y: 1 - (1 - legend.y) * most / height};
  }
}

// The figure as this chart draws it: its panels squared by rangesFor, not by plotly.
function own(figure) {
  for (const key of axesOf(figure.layout)) {
    for (const k of ["scaleanchor", "scaleratio", "constrain"]) delete figure.layout[key][k];
  }
  return figure;
}

// Frame i on screen. A new epoch usually only moves points: then the chart moves plotly's own
// point marks (one transform each) and retitles, a tenth of a full redraw's browser time; plotly
// redraws the whole figure (SYNC_MS later, once the chart is still) so hover and clicks see the
// new positions. Anything else (a first draw, a glide during Play, a point that is not a number)
// is a full redraw at once.
function show(st, i, glide = false) {
  if (!st.figure || i < 0 || i > last(st)) return;
  st.current = i;
  st.shown.add(st.epochs[i]);
  st.root.dataset.epoch = String(st.epochs[i]);
  st.root.dataset.shown = String(st.shown.size);
  st.slider.value = String(i);
  st.label.textContent = `Epoch ${st.epochs[i]}` + (st.live ? ` · ${st.frames.length} trained` : "");
  if (!st.plotly) return; // drawn once plotly.js has loaded
  clearTimeout(st.sync);
  const frame = st.frames[i];
  if (!glide && !st.busy && st.marks && moveMarks(st, frame, rangesFor(st, frame))) {
    retitle(st, frame);
    st.root.dataset.moved = String(Number(st.root.dataset.moved || 0) + 1);
    st.sync = setTimeout(() => draw(st, st.current), SYNC_MS);
  } else {
    draw(st, i, glide);
  }
}

function draw(st, i, glide = false) {
  const frame = st.frames[i];
  const base = st.figure;
  const data = base.data.slice();
  frame.traces.forEach((t, j) => { data[t] = {...base.data[t], ...frame.data[j], type: base.data[t].type}; });
  // No uirevision: this chart keeps the student's zoom itself (st.zoom), and plotly's memory of
  // "user" ranges would also keep ranges it widened to square a panel in an earlier frame.
  const layout = {...base.layout, annotations: frame.layout.annotations, uirevision: undefined,
                  title: {...base.layout.title, ...frame.layout.title}};
  const ranges = rangesFor(st, frame);
  for (const key of axesOf(base.layout)) {
    layout[key] = ranges[key] ? {...base.layout[key], range: ranges[key], autorange: false} : base.layout[key];
  }
  fitHeight(st, layout);
  if (glide) layout.transition = {duration: st.transitionMs, easing: "cubic-in-out"};
  st.busy = true;
  st.marks = null;
  st.root.dataset.drawn = String(Number(st.root.dataset.drawn || 0) + 1);
  const first = !st.sized;
  st.sized = true;
  st.plotly.react(st.plot, data, layout, CONFIG).then(() => { st.marks = marksOf(st); }).finally(() => {
    st.busy = false;
    if (first) draw(st, st.current); // the panels' sizes are known now: square them
  });
  if (!st.drawn) {
    st.drawn = true;
    st.plot.on("plotly_relayout", (ev) => zoomed(st, ev));
    st.plot.on("plotly_click", (ev) => picked(st, ev));
  }
}

// Each scatter trace's point marks, by trace index (plotly binds its calcdata to each trace group).
function marksOf(st) {
  const out = new Map();
  for (const group of st.plot.querySelectorAll(".scatterlayer .trace")) {
    const index = group.__data__?.[0]?.trace?.index;
    if (Number.isInteger(index)) out.set(index, Array.from(group.querySelectorAll("path.point")));
  }
  return out;
}

// Move the marks of the frame's moving traces to its points; false (nothing moved) where a mark
// is missing or a point is not a number: plotly draws those.
function moveMarks(st, frame, ranges) {
  const full = st.plot._fullLayout;
  if (!full) return false;
  const moves = [];
  for (let j = 0; j < frame.traces.length; j++) {
    const t = frame.traces[j];
    const {x, y} = frame.data[j];
    const marks = st.marks.get(t);
    if (!marks || !x || marks.length !== x.length) return false;
    for (let k = 0; k < x.length; k++) if (!Number.isFinite(x[k]) || !Number.isFinite(y[k])) return false;
    const trace = st.figure.data[t];
    const xk = axisKey(trace.xaxis || "x");
    const yk = axisKey(trace.yaxis || "y");
    const xa = full[xk];
    const ya = full[yk];
    const xr = ranges[xk];
    const yr = ranges[yk];
    if (!xa?._length || !ya?._length || !xr || !yr) return false;
    moves.push([marks, x, y, xa._length / (xr[1] - xr[0]), xr[0], ya._length / (yr[1] - yr[0]), yr[1]]);
  }
  for (const [marks, x, y, sx, x0, sy, y1] of moves) {
    for (let k = 0; k < marks.length; k++) {
      marks[k].setAttribute("transform", `translate(${((x[k] - x0) * sx).toFixed(2)},${((y1 - y[k]) * sy).toFixed(2)})`);
    }
  }
  return true;
}

// The title ("Epoch n") and the panel titles' "P@1 0.93" of a frame whose points were moved,
// written into plotly's own text nodes (a relayout of the titles costs a full redraw). A title
// that changed otherwise waits for the redraw.
function retitle(st, frame) {
  const title = st.plot.querySelector(".gtitle");
  if (title) title.textContent = frame.layout.title.text;
  frame.layout.annotations.forEach((a, k) => {
    const caption = a.text.match(/P@1 [^<]*$/)?.[0];
    const group = st.plot.querySelector(`.annotation[data-index="${k}"]`);
    if (!caption || !group) return;
    const walk = document.createTreeWalker(group, NodeFilter.SHOW_TEXT);
    for (let node = walk.nextNode(); node; node = walk.nextNode()) {
      if (node.nodeValue.includes("P@1")) node.nodeValue = node.nodeValue.replace(/P@1 .*$/, caption);
    }
  });
}

function zoomed(st, ev) {
  if (st.busy || !ev) return;
  const keys = Object.keys(ev);
  if (keys.includes("autosize") || keys.includes("width")) { // the page resized the chart: square it again
    draw(st, st.current);
    return;
  }
  if (keys.some((k) => k.endsWith(".autorange"))) { // double-click: back to following the points
    st.zoom = {};
    show(st, st.current);
    return;
  }
  for (const k of keys) {
    const axis = k.split(".")[0];
    if (AXIS.test(axis) && k.includes(".range")) st.zoom[axis] = st.plot._fullLayout[axis].range.slice();
  }
}

function picked(st, ev) {
  if (!st.selectable || !ev || !ev.points || !ev.points.length) return;
  const p = ev.points[0];
  if (p.curveNumber % 2 === 0 && p.curveNumber < 2 * st.panels) {
    st.setTrigger("picked", {panel: p.curveNumber / 2, point: p.pointIndex});
  }
}

function ask(st, sig, have) {
  const asked = `${sig}|${have}`;
  if (st.asked === asked) return;
  st.asked = asked;
  st.setTrigger("need", {sig, have});
}

function receive(st, data) {
  st.updates += 1;
  st.root.dataset.updates = String(st.updates);
  st.live = !!data.live;
  st.root.dataset.live = st.live ? "1" : "0";
  st.selectable = !!data.selectable;
  st.panels = data.panels || 0;
  st.frameMs = data.frame_ms || st.frameMs;
  st.transitionMs = data.transition_ms ?? st.transitionMs;
  st.stepMs = data.step_ms || st.stepMs;
  st.box.classList.toggle("fvz-present", !!data.presentation);
  st.badge.style.display = st.live ? "" : "none";
  const fresh = data.figure && data.first === 0;
  if (data.sig !== st.sig && !fresh) return ask(st, data.sig, 0); // a new view, and this chart lacks its figure
  let keep = null;
  if (fresh) { // a new view (colouring, ring, projection) or a resend: same chart, same place
    keep = st.sig === data.sig || st.follow ? null : st.current;
    st.sig = data.sig;
    st.figure = own(decode(data.figure));
    st.frames = [];
    st.epochs = [];
    st.current = -1;
  }
  if (data.first > st.frames.length) return ask(st, data.sig, st.frames.length); // a gap: this chart was remounted
  st.asked = null;
  const skip = st.frames.length - data.first;
  for (let j = Math.max(0, skip); j < data.frames.length; j++) {
    st.frames.push(decode(data.frames[j]));
    st.epochs.push(data.epochs[j]);
  }
  st.ranges = data.ranges ? decode(data.ranges) : null;
  st.root.dataset.frames = String(st.frames.length);
  st.slider.max = String(Math.max(0, last(st)));
  st.slider.disabled = st.frames.length < 2;
  st.play.disabled = st.frames.length < 2;
  st.note.textContent = st.frames.length || !st.live ? "" : "The first epoch appears here in a moment…";
  st.box.querySelector(".fvz-bar").style.display = st.frames.length ? "" : "none";
  if (!st.frames.length) return still(st); // a figure without epochs: a placeholder, drawn as it is
  if (data.show !== null && data.show !== undefined && data.show !== st.lastShow) {
    st.lastShow = data.show;
    pause(st);
    stopStepping(st);
    st.follow = data.show >= last(st);
    show(st, Math.min(data.show, last(st)));
  } else if (keep !== null) {
    show(st, Math.min(keep, last(st)));
  } else if (fresh && st.follow) {
    show(st, st.live ? Math.max(0, last(st)) : last(st)); // a view of a finished run opens on its last epoch
  } else {
    catchUp(st);
  }
  if (!st.live && st.current < 0) show(st, last(st));
}

export default function (component) {
  const {data, parentElement, setTriggerValue} = component;
  let st = parentElement.__fatvizLive;
  if (!st) {
    st = build(parentElement, setTriggerValue);
    parentElement.__fatvizLive = st;
    loadPlotly().then((plotly) => {
      st.plotly = plotly;
      if (st.frames.length) show(st, st.current < 0 ? last(st) : st.current);
      else still(st);
    }).catch((err) => { st.note.textContent = `The chart cannot be drawn: ${err.message}.`; });
  }
  st.setTrigger = setTriggerValue;
  if (data) receive(st, data);
  return () => {
    pause(st);
    stopStepping(st);
  };
}
