// The receivers of a run to a multicast group: one result row per socketlab sink on the
// group (this lab's or a peer's), with what it counted of the run.
import { el, figure } from "./util.js";

/** Whether a run's target (udp://host:port) is a multicast group: 224.0.0.0/4 or ff00::/8. */
export function isGroupTarget(target) {
  const m = /^udp:\/\/(\[([^\]]+)\]|([^:/]+)):\d+$/.exec(String(target || ""));
  if (!m) return false;
  if (m[2]) return /^ff/i.test(m[2]);
  const first = Number(m[3].split(".")[0]);
  return /^\d+\.\d+\.\d+\.\d+$/.test(m[3]) && first >= 224 && first <= 239;
}

function receiverName(row) {
  return `${row.peer || "this lab"} · ${row.listener}`;
}

/** [label, value, key] rows for summary.receivers; none for a run to no group. */
export function receiverRows(s) {
  const rows = s.receivers;
  if (!rows) return [];
  if (!rows.length) return [["receivers", "none known: no sink of this lab or its peers on the group", "receivers"]];
  return rows.map((row, i) => {
    const at = `receivers.${i}`;
    const value = row.received == null
      ? el("span", { text: `not known: ${row.error}` })
      : el("span", {},
        figure(`${at}.received`, "count", row.received), " msgs · lost ",
        figure(`${at}.lost`, "count", row.lost), " (", figure(`${at}.loss_pct`, "pct", row.loss_pct), ") · dup ",
        figure(`${at}.duplicates`, "count", row.duplicates), " · reord ",
        figure(`${at}.reordered`, "count", row.reordered), " · jitter ",
        figure(`${at}.jitter_ms`, "ms", row.jitter_ms));
    return [`receiver ${receiverName(row)}`, value, `receiver_${i}`];
  });
}
