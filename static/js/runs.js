// Runs: the history (search, labels, delete), one run's details (percentiles, histogram,
// series), and any number of runs compared. Rows of running runs follow the live feed.
import { $, api, cell, el, fmtMs, fmtMsgRate, fmtNum, fmtSeconds, kvRows, timeEl } from "./util.js";
import { feed } from "./feed.js";
import { COMPARE_ROUTE, registerSection, state } from "./state.js";
import { Histogram } from "./histogram.js";
import { compareRuns, setCompareLog } from "./compare.js";
import { describeSpec, pctPairs, runCharts, statusPill, summaryPairs } from "./runview.js";
import { showFailures } from "./failures.js";
import { showSteps } from "./steptable.js";

let items = [];
const ticked = new Set();
let detailCharts = null;
let histogram = null;
let detailId = null;
let detailStatus = null;
let visible = false;
const filters = { q: "", pattern: "", status: "", label: "" };

// The patterns the Fire form offers come from the server's run spec models: so do these.
const runForm = document.querySelector("[data-run-form]");
for (const pattern of Object.keys(runForm ? JSON.parse(runForm.dataset.runForm).fields : {})) {
  $("#runs-pattern").append(el("option", { value: pattern, text: pattern }));
}

function labelChip(label) {
  return el("button", { type: "button", class: "pill label", dataset: { label }, title: `show runs labelled ${label}`,
    text: label, onclick: () => { filters.label = label; loadList(); } });
}

function rowFor(r) {
  const s = r.summary;
  const rtt = s.rtt_ms;
  const box = el("input", { type: "checkbox", "aria-label": `compare run ${r.id}`, checked: ticked.has(r.id) });
  box.addEventListener("change", () => {
    if (box.checked) ticked.add(r.id); else ticked.delete(r.id);
    $("#compare-button").disabled = ticked.size < 2;
  });
  const open = el("a", { href: `#runs/${r.id}`, class: "mono", text: r.id });
  // The same hash again is no hashchange: open it here too.
  open.addEventListener("click", () => { if (location.hash === `#runs/${r.id}`) showDetail(r.id, { scroll: true }); });
  return el("tr", { dataset: { id: r.id, status: r.status } },
    cell(box), cell(open), cell(statusPill(r.status)), cell(r.spec?.pattern || "pingpong"),
    cell(r.spec?.target || "–"), cell(fmtNum(s.sent), "num"), cell(fmtNum(s.received), "num"),
    cell(fmtMs(rtt.p50), "num"), cell(fmtMs(rtt.p99), "num"), cell(fmtMsgRate(s.msgs_per_s), "num"),
    cell(timeEl(r.started_at || r.created_at)), cell(fmtSeconds(s.elapsed), "num"),
    cell(el("span", { class: "labels" }, ...(r.labels || []).map(labelChip))));
}

function filterText() {
  const parts = Object.entries(filters).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`);
  return parts.length ? ` matching ${parts.join(", ")}` : "";
}

function renderList() {
  $("#runs-table tbody").replaceChildren(...items.map(rowFor));
  $("#compare-button").disabled = ticked.size < 2;
  const chip = $("#runs-label-filter");
  chip.hidden = !filters.label;
  chip.replaceChildren(filters.label ? el("button", { type: "button", class: "pill label", "aria-label": `stop filtering by label ${filters.label}`,
    text: `label ${filters.label} ×`, onclick: () => { filters.label = ""; loadList(); } }) : "");
  $("#runs-msg").textContent = items.length ? `${fmtNum(items.length)} runs${filterText()}, newest first` : `no runs${filterText()}`;
}

function listQuery(extra = {}) {
  const params = new URLSearchParams({ limit: "200" });
  for (const [key, value] of Object.entries({ ...filters, ...extra })) if (value) params.set(key, value);
  return `/api/runs?${params}`;
}

async function loadList() {
  try {
    items = (await api("GET", listQuery())).items || [];
    renderList();
  } catch (err) {
    $("#runs-msg").textContent = err.message;
  }
}

$("#runs-search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  filters.q = $("#runs-q").value.trim();
  filters.pattern = $("#runs-pattern").value;
  filters.status = $("#runs-status").value;
  loadList();
});

function logScale() {
  return $("#rtt-log").checked;
}

function ensureDetailCharts() {
  if (!histogram) histogram = new Histogram($("#chart-detail-hist"), $("#detail-hist-markers"));
  if (detailCharts) return;
  const series = $("#chart-detail-series");
  const rtt = el("div", { class: "chart", "data-points": "0", id: "chart-detail-rtt" });
  const tput = el("div", { class: "chart", "data-points": "0", id: "chart-detail-tput" });
  series.replaceChildren(rtt, tput);
  detailCharts = runCharts(rtt, tput, 220, { log: logScale() });
}

/** Scroll `node` to just under the sticky header (scrollIntoView would hide it beneath). */
function bringIntoView(node) {
  const header = document.querySelector("header");
  const below = header ? header.getBoundingClientRect().bottom : 0;
  const top = node.getBoundingClientRect().top + window.scrollY - below - 8;
  window.scrollTo({ top: Math.max(0, top), behavior: "instant" });
}

function renderLabels(id, labels) {
  $("#detail-labels").replaceChildren(...labels.map((label) => el("span", { class: "pill label", dataset: { label } }, label, " ",
    el("button", { type: "button", class: "link", "aria-label": `remove label ${label}`, text: "×",
      onclick: () => changeLabel("DELETE", `/api/runs/${id}/labels/${encodeURIComponent(label)}`) }))));
}

async function showDetail(id, { scroll = false } = {}) {
  const box = $("#run-detail");
  try {
    const [run, hist] = await Promise.all([api("GET", `/api/runs/${id}`), api("GET", `/api/runs/${id}/histogram`)]);
    detailId = run.id;
    detailStatus = run.status;
    box.hidden = false;
    ensureDetailCharts();
    $("#detail-id").textContent = run.id;
    $("#detail-status").replaceWith(Object.assign(statusPill(run.status), { id: "detail-status" }));
    $("#detail-spec").textContent = describeSpec(run.spec);
    $("#export-json").href = `/api/runs/${run.id}/export?format=json`;
    $("#export-json").download = `run-${run.id}.json`;
    $("#export-csv").href = `/api/runs/${run.id}/export?format=csv`;
    $("#export-csv").download = `run-${run.id}.csv`;
    $("#export-html").href = `/api/runs/${run.id}/report.html`;
    $("#export-html").download = `run-${run.id}-report.html`;
    renderLabels(run.id, run.labels || []);
    $("#detail-delete").disabled = run.status === "running" || run.status === "paused";
    $("#detail-summary tbody").replaceChildren(...kvRows(summaryPairs(run)));
    $("#detail-pct tbody").replaceChildren(...kvRows(pctPairs(run)));
    showFailures($("#detail-failures-box"), $("#detail-failures"), run.summary);
    showSteps($("#detail-steps-box"), $("#detail-steps"), run.summary);
    $("#chart-detail-hist").closest("figure").hidden = hist.buckets.length === 0;
    if (hist.buckets.length) histogram.show([{ id: run.id, label: "messages", histogram: hist }]);
    else histogram.clear();
    detailCharts.setSeries(run.series);
    detailCharts.explain(run);
    $("#chart-detail-series").dataset.points = String((run.series || []).length);
    if (scroll) {
      $("#run-compare").hidden = true;
      bringIntoView(box);
    }
  } catch (err) {
    $("#runs-msg").textContent = err.message;
  }
}

async function changeLabel(method, path, body) {
  try {
    const answer = await api(method, path, body);
    renderLabels(answer.id, answer.labels);
    $("#detail-msg").textContent = "";
    const item = items.find((r) => r.id === answer.id);
    if (item) {
      item.labels = answer.labels;
      renderList();
    }
  } catch (err) {
    $("#detail-msg").textContent = err.field ? `${err.message} (field: ${err.field})` : err.message;
  }
}

$("#label-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const label = $("#label-input").value.trim();
  if (!label || !detailId) return;
  $("#label-input").value = "";
  changeLabel("POST", `/api/runs/${detailId}/labels`, { label });
});

$("#detail-delete").addEventListener("click", async () => {
  const id = detailId;
  if (!id || !window.confirm(`Delete run ${id} with its series and labels?`)) return;
  try {
    await api("DELETE", `/api/runs/${id}`);
    ticked.delete(id);
    detailId = null;
    $("#run-detail").hidden = true;
    $("#runs-msg").textContent = `run ${id} deleted`;
    if (location.hash !== "#runs") location.hash = "#runs";
    else loadList();
  } catch (err) {
    $("#detail-msg").textContent = err.message;
  }
});

$("#rtt-log").addEventListener("change", () => {
  if (detailCharts) {
    detailCharts.rtt.destroy();
    detailCharts.tput.destroy();
    detailCharts = null;
    if (detailId && !$("#run-detail").hidden) showDetail(detailId);
  }
  setCompareLog(logScale());
});

// A comparison has its own address, #runs/compare/<id>,<id>,..., to bookmark or send.

async function showCompare(ids) {
  try {
    await compareRuns(ids, { log: logScale() });
    $("#run-detail").hidden = true;
    bringIntoView($("#run-compare"));
  } catch (err) {
    $("#runs-msg").textContent = err.message;
  }
}

$("#compare-button").addEventListener("click", () => {
  if (ticked.size < 2) return;
  const hash = `#runs/${COMPARE_ROUTE}${[...ticked].join(",")}`;
  // The same hash again is no hashchange: show it here then.
  if (location.hash === hash) showCompare([...ticked]);
  else location.hash = hash;
});
$("#runs-refresh").addEventListener("click", loadList);
document.addEventListener("socketlab:run-ended", () => { if (visible) loadList(); });

// Rows of running runs (and the details of a running run) follow the live feed: at most once
// a second, their documents are read again from the API, so the row shows the API's figures.
let refreshing = false;
let lastRefresh = 0;
// A paused run is going too (its status says which, the store keeps it as running).
const live = (status) => status === "running" || status === "paused";
async function refreshRunning() {
  const rows = items.filter((r) => live(r.status));
  const detailLive = detailId && live(detailStatus) && !$("#run-detail").hidden;
  if ((!rows.length && !detailLive) || refreshing || Date.now() - lastRefresh < 1000) return;
  refreshing = true;
  lastRefresh = Date.now();
  try {
    if (rows.length) {
      const lists = await Promise.all(["running", "paused"].map((status) => api("GET", listQuery({ status }))));
      const fresh = new Map(lists.flatMap((doc) => doc.items || []).map((r) => [r.id, r]));
      for (const [i, r] of items.entries()) {
        const now = fresh.get(r.id);
        if (!live(r.status) || !now) continue;
        items[i] = now;
        const tr = $(`#runs-table tbody tr[data-id="${r.id}"]`);
        if (tr) tr.replaceWith(rowFor(now));
      }
    }
    if (detailLive) await showDetail(detailId);
  } catch (err) {
    $("#runs-msg").textContent = err.message;
  } finally {
    refreshing = false;
  }
}

// Runs started elsewhere (the API, the CLI, another browser) appear in the list when a tick
// first carries them, and take their final status when the feed says they ended.
let liveKey = "";
feed.on("tick", () => {
  const key = state.runs.map((r) => r.id).join(",");
  const appeared = key !== liveKey && state.runs.some((r) => !liveKey.split(",").includes(r.id));
  liveKey = key;
  if (!visible) return;
  if (appeared) loadList();
  else refreshRunning();
});
feed.on("run.ended", () => { if (visible) loadList(); });

registerSection("runs", {
  show(arg) {
    visible = true;
    loadList();
    if (arg.startsWith(COMPARE_ROUTE)) {
      const ids = arg.slice(COMPARE_ROUTE.length).split(",").filter(Boolean);
      for (const id of ids) ticked.add(id);
      showCompare(ids);
    } else if (arg) showDetail(arg, { scroll: true });
  },
  hide() { visible = false; },
});
