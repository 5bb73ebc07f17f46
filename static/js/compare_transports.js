// Compare transports: the Fire form's load over TCP and UDP at once (POST /api/compare),
// shown side by side: UDP's loss and jitter beside TCP's zero loss, its retransmits and its
// latency tail. Every figure is the API's own value through util.js's formatter of its unit.
// (static/js/compare.js is another thing: saved runs on one chart.)
import { $, api, el, figure, markField, showError } from "./util.js";
import { specFromForm } from "./fire.js";
import { COMPARE_ROUTE } from "./state.js";

const form = $("#fire-form");
const view = $("#compare-view");
const POLL_MS = 1000;

// [label, summary field (dotted path), unit, what a transport without the figure says].
const NO_RETRANSMITS = { udp: "UDP does not retransmit" };
export const COMPARE_ROWS = [
  ["Sent", "sent", "count"],
  ["Received", "received", "count"],
  ["Lost", "lost", "count"],
  ["Round-trip loss", "loss_pct", "pct"],
  ["Jitter", "jitter_ms", "ms", { tcp: "not measured over TCP" }],
  ["Retransmits (kernel)", "tcp.retransmits", "count", NO_RETRANSMITS],
  ["Bytes retransmitted", "tcp.bytes_retrans", "bytes", NO_RETRANSMITS],
  ["RTT p50", "rtt_ms.p50", "ms"],
  ["RTT p99", "rtt_ms.p99", "ms"],
  ["RTT p99.9", "rtt_ms.p999", "ms"],
  ["RTT max", "rtt_ms.max", "ms"],
  ["Received rate", "msgs_per_s", "msgrate"],
  ["Bit rate", "bits_per_s", "bitrate"],
  ["Errors", "errors", "count"],
];

/** The value at a dotted path of a summary (undefined where a part is missing). */
export function fieldValue(summary, path) {
  return path.split(".").reduce((node, key) => (node == null ? undefined : node[key]), summary);
}

/** Why a side shows no figure: the transport does not have it, or the kernel's reason
 * (a TCP run where TCP_INFO could not be read); null when it has the figure. */
function absentText(transport, summary, [, field, , absent]) {
  if (fieldValue(summary, field) != null) return null;
  if (absent && absent[transport]) return absent[transport];
  return field.startsWith("tcp.") ? summary.tcp?.reason ?? null : null;
}

function sideCell(run, row) {
  const transport = run.spec.target.split("://")[0];
  const td = el("td", { class: "num", dataset: { transport } });
  if (!run.summary) return td;
  const why = absentText(transport, run.summary, row);
  td.append(why ? el("span", { class: "muted", dataset: { absent: row[1] }, text: why })
    : figure(row[1], row[2], fieldValue(run.summary, row[1])));
  return td;
}

/** The comparison document (GET /api/compare/{id}) as a table: a row per figure, a column
 * per transport. */
export function renderCompare(doc) {
  $("#compare-id").textContent = doc.id;
  $("#compare-status").textContent = doc.status;
  view.dataset.status = doc.status;
  const runs = doc.transports.map((t) => doc.runs[t]);
  $("#compare-transports-table thead").replaceChildren(el("tr", {}, el("th", { scope: "col", text: "" }),
    ...doc.transports.map((t, i) => el("th", { scope: "col" }, t.toUpperCase(), " ",
      el("a", { class: "mono", href: `#runs/${runs[i].id}`, text: runs[i].id })))));
  $("#compare-transports-table tbody").replaceChildren(...COMPARE_ROWS.map((row) =>
    el("tr", { dataset: { key: row[1] } }, el("th", { scope: "row", text: row[0] }),
      ...runs.map((run) => sideCell(run, row)))));
  view.hidden = false;
}

let following = null;

async function follow(id) {
  following = id;
  while (following === id) {
    let doc;
    try {
      doc = await api("GET", `/api/compare/${id}`);
    } catch (err) {
      showError($("#fire-error"), err);
      return;
    }
    if (following !== id) return;
    renderCompare(doc);
    if (doc.status !== "running") return;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

document.addEventListener("socketlab:compare", (ev) => follow(ev.detail));

$("#compare-transports-button").addEventListener("click", async () => {
  $("#fire-error").hidden = true;
  const button = $("#compare-transports-button");
  button.disabled = true;
  try {
    const spec = specFromForm();
    const ref = await api("POST", "/api/compare", spec);
    markField(form, null);
    // The comparison's own address (#fire/compare/<id>): the Fire section's route follows it.
    const hash = `#fire/${COMPARE_ROUTE}${ref.id}`;
    if (location.hash === hash) follow(ref.id);
    else location.hash = hash;
  } catch (err) {
    markField(form, err.field);
    showError($("#fire-error"), err);
  } finally {
    button.disabled = false;
  }
});
