// The components' stylesheets (live_chart.css, bound_drag.css beside this file), linked into the
// page once: the components are not in a shadow root (isolate_styles=False), so one <link> in the
// document styles every instance.
export function linkStyle(id, url) {
  if (document.getElementById(id)) return;
  const link = document.createElement("link");
  link.id = id;
  link.rel = "stylesheet";
  link.href = url;
  document.head.appendChild(link);
}
