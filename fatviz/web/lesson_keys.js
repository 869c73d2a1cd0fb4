// The Lesson's left and right arrow keys: Back and Next without the mouse, as a presenter's
// clicker sends them. Streamlit has no key handler, so this listens on the page itself.
//
// Data in:  {step, count} (1-based step shown, number of steps)
// Out:      trigger "go" with the step to show (never outside 1..count)
const TYPING = "input, textarea, select, [contenteditable], [role='slider'], [role='textbox'], [role='combobox']";

export default function (component) {
  const {data, setTriggerValue} = component;
  const st = window.__fatvizLessonKeys || (window.__fatvizLessonKeys = {});
  st.step = data.step;
  st.count = data.count;
  st.go = setTriggerValue;
  if (!st.listening) {
    st.listening = true;
    document.addEventListener("keydown", (ev) => {
      if (!st.go || ev.altKey || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.repeat) return;
      const target = ev.target instanceof Element ? ev.target : null;
      if (target && target.closest(TYPING)) return; // a slider or a text field keeps its arrow keys
      const move = {ArrowRight: 1, ArrowLeft: -1}[ev.key];
      if (!move) return;
      const next = Math.min(st.count, Math.max(1, st.step + move));
      if (next === st.step) return;
      st.step = next; // a second press before the page answers goes one further
      ev.preventDefault();
      st.go("go", next);
    });
  }
  return undefined;
}
