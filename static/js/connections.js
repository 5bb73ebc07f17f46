// Connections: a server-paged live table. The browser holds only the page it shows; the
// server sends that page's changes (see app/connview.py), so 10,000 connections cost the
// feed no more than 100 do.
import { $, $$, api, debounce, el, fmtBytes, fmtNum, setTime, showError, timeEl } from "./util.js";
import { feed } from "./feed.js";
import { registerSection, state } from "./state.js";
import { KERNEL_COLUMNS, addHeaders, buildDetail, buildPicker, fillCells, newCells, showDetail, syncHeaders } from "./tcpinfo.js";

const view = { type: "view", offset: 0, limit: 100, sort: "id", desc: false, listener: "", run: "", protocol: "", q: "", seq: 0 };
const rows = new Map();
let order = [];
let info = { matched: 0, total: 0, offset: 0, limit: 100, seq: 0 };
const trs = new Map();
const closing = new Set();
let dirty = false;
let visible = false;

// Timing of views for people and benchmarks: when each view was asked for and drawn.
const timing = { sent: new Map(), rendered: { seq: 0, at: 0, ms: null } };
window.socketlab = Object.assign(window.socketlab || {}, { feed, connections: { view, timing, info: () => info } });

function sendView({ keepOffset = false } = {}) {
  if (!keepOffset) view.offset = 0;
  view.seq += 1;
  timing.sent.set(view.seq, performance.now());
  feed.send(view);
}
feed.setViewProvider(() => view);

const NUMERIC = new Set(["bytes_in", "bytes_out", "msgs_in", "msgs_out", "opened_at", "last_active",
  ...KERNEL_COLUMNS.filter((c) => !c.text).map((c) => c.key)]);

// The kernel's columns (hidden until picked) go before the close column; the picker above
// the table, a connection's detail below it.
const headRow = $("#conn-table thead tr");
addHeaders(headRow, headRow.lastElementChild);
const detail = buildDetail();
$("#conn-table").closest(".scroll").after(detail);
$("#conn-filters").after(buildPicker(() => {
  syncHeaders($("#conn-table"));
  for (const [id, tr] of trs) { const row = rows.get(id); if (row) updateRow(tr, row); }
}));

function owner(value) {
  if (value.startsWith("run:")) {
    const id = value.slice(4);
    return el("a", { href: `#runs/${id}`, text: `run ${id}` });
  }
  return document.createTextNode(value ? `listener ${value}` : "–");
}

function buildRow(row) {
  const tr = el("tr", { dataset: { id: row.id } });
  for (let i = 0; i < 11; i += 1) tr.append(el("td", { class: i >= 5 && i <= 8 ? "num" : i === 0 ? "mono" : null }));
  const open = el("button", { type: "button", class: "link conn-id", text: row.id, "aria-label": `Details of connection ${row.id}` });
  open.addEventListener("click", () => showDetail(detail, row.id));
  tr.children[0].append(open);
  tr._k = newCells();
  tr.append(...tr._k);
  const button = el("button", { type: "button", class: "danger small close-conn", "aria-label": `Close connection ${row.id}`, text: "Close" });
  button.addEventListener("click", () => closeConn(row.id, tr));
  tr.append(el("td", {}, button));
  tr._v = {};
  return tr;
}

function setCell(tr, index, key, value, make) {
  if (tr._v[key] === value) return;
  tr._v[key] = value;
  const td = tr.children[index];
  if (make) td.replaceChildren(make(value));
  else td.textContent = value;
}

function updateRow(tr, row) {
  setCell(tr, 1, "protocol", row.protocol);
  setCell(tr, 2, "owner", row.owner, owner);
  setCell(tr, 3, "local", row.local);
  setCell(tr, 4, "remote", row.remote);
  setCell(tr, 5, "bytes_in", fmtBytes(row.bytes_in));
  setCell(tr, 6, "bytes_out", fmtBytes(row.bytes_out));
  setCell(tr, 7, "msgs_in", fmtNum(row.msgs_in));
  setCell(tr, 8, "msgs_out", fmtNum(row.msgs_out));
  setCell(tr, 9, "opened_at", row.opened_at, (t) => timeEl(t));
  if (tr._v.last_active !== row.last_active) {
    tr._v.last_active = row.last_active;
    const td = tr.children[10];
    if (td.firstChild && td.firstChild.dataset) setTime(td.firstChild, row.last_active);
    else td.replaceChildren(timeEl(row.last_active, { relOnly: true }));
  }
  fillCells(tr._k, row, tr._v);
  tr.classList.toggle("closing", closing.has(row.id));
}

function render() {
  dirty = false;
  const body = $("#conn-table tbody");
  const focusedId = document.activeElement?.closest?.("#conn-table tbody tr")?.dataset.id;
  const wanted = new Set(order);
  for (const [id, tr] of trs) {
    if (!wanted.has(id)) { tr.remove(); trs.delete(id); }
  }
  let previous = null;
  for (const id of order) {
    const row = rows.get(id);
    if (!row) continue;
    let tr = trs.get(id);
    if (!tr) { tr = buildRow(row); trs.set(id, tr); }
    updateRow(tr, row);
    const expectedNext = previous ? previous.nextSibling : body.firstChild;
    if (expectedNext !== tr) body.insertBefore(tr, expectedNext);
    previous = tr;
  }
  if (focusedId && !trs.has(focusedId)) {
    // Keep the keyboard in the table after the focused row went away.
    const next = body.querySelector("button.close-conn");
    if (next) next.focus();
  }
  const first = info.matched ? info.offset + 1 : 0;
  const last = Math.min(info.offset + info.limit, info.matched);
  const filtered = info.matched !== info.total ? ` matching (of ${fmtNum(info.total)} open)` : " open";
  $("#pg-info").textContent = info.matched
    ? `${fmtNum(first)}–${fmtNum(last)} of ${fmtNum(info.matched)}${filtered}`
    : info.total ? `no connection matches (of ${fmtNum(info.total)} open)` : "no connections";
  $("#pg-first").disabled = $("#pg-prev").disabled = info.offset === 0;
  $("#pg-next").disabled = $("#pg-last").disabled = info.offset + info.limit >= info.matched;
  for (const th of $$("#conn-table th[data-sort]")) {
    if (th.dataset.sort === view.sort) th.setAttribute("aria-sort", view.desc ? "descending" : "ascending");
    else th.removeAttribute("aria-sort");
  }
  const table = $("#conn-table");
  table.dataset.seq = String(info.seq);
  if (timing.rendered.seq !== info.seq) {
    const sent = timing.sent.get(info.seq);
    timing.rendered = { seq: info.seq, at: performance.now(), ms: sent ? performance.now() - sent : null };
    for (const seq of timing.sent.keys()) if (seq <= info.seq) timing.sent.delete(seq);
  }
}

function schedule() {
  if (!visible) { dirty = true; return; }
  if (!dirty) {
    dirty = true;
    requestAnimationFrame(render);
  }
}

feed.on("conns", (msg) => {
  if (msg.seq < view.seq) return; // a page of a view this browser has left already
  if (msg.ids) {
    order = msg.ids;
    const keep = new Set(order);
    for (const id of rows.keys()) if (!keep.has(id)) rows.delete(id);
    for (const id of closing) if (!keep.has(id)) closing.delete(id);
  }
  if (msg.rows) {
    const cols = msg.cols;
    for (const values of msg.rows) {
      const row = {};
      cols.forEach((name, i) => { row[name] = values[i]; });
      rows.set(row.id, row);
    }
  }
  info = { matched: msg.matched, total: msg.total, offset: msg.offset, limit: msg.limit, seq: msg.seq };
  if (view.offset !== msg.offset && msg.seq === view.seq) view.offset = msg.offset;
  schedule();
});

feed.on("error", (msg) => showError($("#conn-error"), { message: msg.error, field: msg.field }));

async function closeConn(id, tr) {
  closing.add(id);
  tr.classList.add("closing");
  const button = tr.querySelector("button");
  button.disabled = true;
  const next = tr.nextElementSibling?.querySelector("button.close-conn");
  if (next && document.activeElement === button) next.focus();
  try {
    await api("DELETE", `/api/connections/${encodeURIComponent(id)}`);
  } catch (err) {
    closing.delete(id);
    tr.classList.remove("closing");
    button.disabled = false;
    showError($("#conn-error"), err.status === 404 ? { message: `connection ${id} is already gone` } : err);
  }
}

// ---- filters, sorting, paging ----------------------------------------------------------------
const form = $("#conn-filters");
for (const name of ["listener", "run", "protocol"]) {
  form.elements[name].addEventListener("change", (ev) => { view[name] = ev.target.value; sendView(); });
}
form.elements.limit.addEventListener("change", (ev) => { view.limit = Number(ev.target.value); sendView(); });
const typed = debounce(() => { view.q = form.elements.q.value; sendView(); }, 40);
form.elements.q.addEventListener("input", typed);
for (const th of $$("#conn-table th[data-sort]")) {
  th.querySelector("button").addEventListener("click", () => {
    const key = th.dataset.sort;
    if (view.sort === key) view.desc = !view.desc;
    else { view.sort = key; view.desc = NUMERIC.has(key); }
    sendView();
  });
}
function page(offset) {
  view.offset = Math.max(0, offset);
  sendView({ keepOffset: true });
}
$("#pg-first").addEventListener("click", () => page(0));
$("#pg-prev").addEventListener("click", () => page(info.offset - view.limit));
$("#pg-next").addEventListener("click", () => page(info.offset + view.limit));
$("#pg-last").addEventListener("click", () => page(Math.floor(Math.max(info.matched - 1, 0) / view.limit) * view.limit));

function syncOptions(select, items, label) {
  const key = items.map((i) => i.value).join("|");
  if (select.dataset.key === key) return;
  select.dataset.key = key;
  const current = select.value;
  const fixed = [...select.options].slice(0, 2);
  select.replaceChildren(...fixed, ...items.map((i) => el("option", { value: i.value, text: label(i) })));
  if ([...select.options].some((o) => o.value === current)) select.value = current;
}

feed.on("tick", () => {
  syncOptions(form.elements.listener, state.listeners.map((l) => ({ value: l.id, url: l.url })), (i) => `${i.value} · ${i.url}`);
  const runs = state.runs.map((r) => ({ value: r.id, target: r.target }));
  if (view.run && view.run !== "*" && !runs.some((r) => r.value === view.run)) runs.push({ value: view.run, target: "ended" });
  syncOptions(form.elements.run, runs, (i) => `${i.value} · ${i.target}`);
});

registerSection("connections", {
  show(arg) {
    visible = true;
    if (arg) {
      // #connections/run=ID or #connections/listener=ID
      const [key, value] = arg.split("=");
      if ((key === "run" || key === "listener") && value) {
        view[key] = decodeURIComponent(value);
        form.elements[key].value = view[key];
        sendView();
      }
    }
    render();
  },
  hide() { visible = false; },
});
