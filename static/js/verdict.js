// The bottleneck verdict of a run's summary (summary.bottleneck, decided by the engine):
// was socketlab itself the limit, or did it have spare capacity so the figures are the
// target's. Rendered apart from the result table, from the API's own words and figures.
import { el, fmtMs, fmtPct } from "./util.js";

/** Fill `node` with the verdict of `summary`, or hide it when the summary has none yet. */
export function renderVerdict(node, summary) {
  const b = summary && summary.bottleneck;
  node.hidden = !b;
  if (!b) { node.replaceChildren(); return; }
  node.className = `banner ${b.limited ? "warn" : "ok"} verdict`;
  node.dataset.limited = b.limited ? "true" : "false";
  const figures = `CPU ${fmtPct(b.cpu_pct)} · event-loop lag p99 ${fmtMs(b.loop_lag_ms_p99)}, max ${fmtMs(b.loop_lag_ms_max)}`;
  node.replaceChildren(
    el("strong", { text: b.limited ? "Bottleneck: socketlab itself was the limit. " : "Spare capacity. " }),
    el("span", { class: "verdict-reason", text: b.reason }),
    el("span", { class: "muted", text: ` (${figures})` }),
  );
}
