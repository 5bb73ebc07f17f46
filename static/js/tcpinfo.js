// The kernel's view of TCP connections (Linux TCP_INFO, app/tcpinfo.py): the columns a person
// can add to the connections table (and sort by), and a connection's detail. The server reads
// the figures only for the rows a page shows; a null figure is shown as "–" with the
// server's reason (a UDP flow, no TCP_INFO on this platform, an older kernel) as its title.
import { $, api, el, fmtBitRate, fmtBytes, fmtMs, fmtNum, kvRows, showError } from "./util.js";

const count = (v) => fmtNum(v);
/** The kernel's columns, in the feed's order: key (the API's field), header, formatter. */
export const KERNEL_COLUMNS = [
  { key: "state", label: "tcp state", fmt: (v) => v ?? "–", text: true },
  { key: "srtt_ms", label: "srtt", fmt: fmtMs, title: "smoothed round-trip time (kernel)" },
  { key: "rttvar_ms", label: "rttvar", fmt: fmtMs, title: "round-trip time variation (kernel)" },
  { key: "retrans", label: "retrans now", fmt: count, title: "segments retransmitted, not yet acknowledged" },
  { key: "total_retrans", label: "retrans", fmt: count, title: "segments retransmitted over the connection's life" },
  { key: "lost", label: "lost", fmt: count, title: "segments the kernel considers lost now" },
  { key: "reordering", label: "reordering", fmt: count, title: "reordering tolerated, segments" },
  { key: "snd_cwnd", label: "cwnd", fmt: count, title: "congestion window, segments" },
  { key: "unacked", label: "unacked", fmt: count, title: "segments not yet acknowledged" },
  { key: "delivery_bits_per_s", label: "delivery rate", fmt: fmtBitRate, title: "the kernel's delivery-rate estimate" },
  { key: "bytes_retrans", label: "bytes retrans", fmt: fmtBytes, title: "bytes retransmitted" },
];
const DEFAULT_SHOWN = ["srtt_ms", "total_retrans", "snd_cwnd"];
const STORE_KEY = "socketlab.connColumns";

function loadShown() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE_KEY) || "null");
    if (Array.isArray(saved)) return new Set(saved.filter((k) => KERNEL_COLUMNS.some((c) => c.key === k)));
  } catch (e) { /* a bad saved value: the default */ }
  return new Set(DEFAULT_SHOWN);
}

export const shown = loadShown();

/** The kernel's header cells (each a sort button), inserted before ``before``. */
export function addHeaders(headRow, before, onSort) {
  for (const col of KERNEL_COLUMNS) {
    const button = el("button", { type: "button", text: col.label, title: col.title || null });
    button.addEventListener("click", () => onSort(col.key));
    const th = el("th", { scope: "col", class: col.text ? "kcol" : "kcol num", dataset: { sort: col.key, kcol: col.key } }, button);
    th.hidden = !shown.has(col.key);
    headRow.insertBefore(th, before);
  }
}

/** The column picker: a checkbox per kernel column; ``onChange`` after each toggle. */
export function buildPicker(onChange) {
  const boxes = KERNEL_COLUMNS.map((col) => {
    const input = el("input", { type: "checkbox", name: col.key, checked: shown.has(col.key) });
    input.addEventListener("change", () => {
      if (input.checked) shown.add(col.key); else shown.delete(col.key);
      try { localStorage.setItem(STORE_KEY, JSON.stringify([...shown])); } catch (e) { /* private mode */ }
      onChange();
    });
    return el("label", {}, input, ` ${col.label}`);
  });
  return el("details", { id: "conn-columns", class: "columns" },
    el("summary", { text: "Kernel columns (TCP_INFO)" }), ...boxes);
}

/** Empty cells for a new row, one per kernel column. */
export function newCells() {
  return KERNEL_COLUMNS.map((col) => {
    const td = el("td", { class: col.text ? "kcol" : "kcol num", dataset: { kcol: col.key } });
    td.hidden = !shown.has(col.key);
    return td;
  });
}

/** Fill a row's kernel cells (``cells`` from newCells) from a feed row. */
export function fillCells(cells, row, memo) {
  KERNEL_COLUMNS.forEach((col, i) => {
    const value = row[col.key];
    const td = cells[i];
    if (td.hidden !== !shown.has(col.key)) td.hidden = !shown.has(col.key);
    const key = `k:${col.key}`;
    if (memo[key] === value && memo["k:reason"] === row.tcp_reason) return;
    memo[key] = value;
    td.textContent = col.fmt(value);
    td.dataset.value = value == null ? "" : String(value);
    td.title = value == null && row.tcp_reason ? row.tcp_reason : "";
  });
  memo["k:reason"] = row.tcp_reason;
}

/** Show or hide the kernel header cells after the picker changed. */
export function syncHeaders(table) {
  for (const th of table.querySelectorAll("th[data-kcol]")) th.hidden = !shown.has(th.dataset.kcol);
}

/** A connection's detail: every field of the API's row, the kernel's view read now. */
export async function showDetail(panel, id) {
  panel.hidden = false;
  const body = $("tbody", panel);
  const note = $(".kernel-note", panel);
  const error = $(".banner", panel);
  error.hidden = true;
  $("h3", panel).textContent = `Connection ${id}`;
  let row;
  try {
    row = await api("GET", `/api/connections/${encodeURIComponent(id)}`);
  } catch (err) {
    body.replaceChildren();
    showError(error, err.status === 404 ? { message: `connection ${id} is gone` } : err);
    return;
  }
  panel.dataset.id = row.id;
  const tcp = row.tcp || {};
  const pairs = [
    ["protocol", row.protocol, "protocol"],
    ["local", row.local, "local"],
    ["remote", row.remote, "remote"],
    ["bytes in", fmtBytes(row.bytes_in), "bytes_in"],
    ["bytes out", fmtBytes(row.bytes_out), "bytes_out"],
    ...KERNEL_COLUMNS.map((col) => [col.title || col.label, col.fmt(tcp[col.key]), col.key]),
  ];
  body.replaceChildren(...kvRows(pairs));
  for (const col of KERNEL_COLUMNS) {
    const tr = body.querySelector(`tr[data-key="${col.key}"]`);
    if (tr) tr.dataset.value = tcp[col.key] == null ? "" : String(tcp[col.key]);
  }
  note.textContent = tcp.reason ? `Kernel figures unavailable: ${tcp.reason}` : "Kernel figures read when this detail was opened (Linux TCP_INFO).";
}

/** The detail panel (hidden until a row's id is clicked). */
export function buildDetail() {
  const close = el("button", { type: "button", class: "secondary small", text: "Close" });
  const panel = el("section", { id: "conn-detail", class: "card", "aria-live": "polite" },
    el("h3", { text: "Connection" }),
    el("table", { class: "kv" }, el("tbody")),
    el("p", { class: "kernel-note muted" }),
    el("p", { class: "banner error", role: "alert", hidden: true }),
    close);
  close.addEventListener("click", () => { panel.hidden = true; });
  panel.hidden = true;
  return panel;
}
