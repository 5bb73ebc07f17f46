// Fire: a form for every run pattern and option, saved presets, live progress and charts.
import { $, $$, api, el, figure, fmtMs, fmtMsgRate, fmtNum, kvRows, listenerTargets, markField, showError } from "./util.js";
import { isTls } from "./tls.js";
import { isGroupTarget } from "./receivers.js";
import { feed } from "./feed.js";
import { COMPARE_ROUTE, registerSection, state } from "./state.js";
import { pctPairs, runCharts, summaryPairs } from "./runview.js";
import { showFailures } from "./failures.js";
import { showSteps } from "./steptable.js";
import { renderVerdict } from "./verdict.js";
import { RunCards } from "./liveruns.js";

const form = $("#fire-form");
const f = form.elements;
const charts = runCharts($("#chart-run-rtt"), $("#chart-run-tput"), 190);
// The run shown below the cards: this tab's own (a reload keeps it, another tab does not).
const SELECTED_RUN = "socketlab.fire.selected";

let current = null; // the selected run while it goes: {id, finishing: bool}
// Runs the feed said ended (its "run.ended" messages), newest last: a short run can end
// before the POST that started it has answered, so follow() looks here first.
const endedRuns = [];
const ENDED_KEPT = 50;

// ---- which inputs apply to which pattern ---------------------------------------------------
// The fields of each pattern and their defaults come from the server's run spec models, so
// the form shows exactly what the API accepts for the chosen pattern.
const RUN_FORM = JSON.parse(form.dataset.runForm);
for (const node of $$("[data-field]", form)) {
  const input = node.querySelector("input");
  const fallback = RUN_FORM.defaults[node.dataset.field];
  if (input && !input.placeholder && fallback !== undefined) input.placeholder = String(fallback);
}

function applyVisibility() {
  const fields = RUN_FORM.fields[f.pattern.value] || [];
  const tls = isTls(f.target.value);
  for (const node of $$("[data-field]", form)) {
    node.hidden = !fields.includes(node.dataset.field) || ("tls" in node.dataset && !tls);
  }
  // The multicast fields apply to a group target only (and to the patterns that have them).
  const group = isGroupTarget(f.target.value) && fields.includes("ttl");
  for (const node of $$("[data-multicast]", form)) node.hidden = !group;
  const stopBy = f.stop_by.value;
  for (const node of $$("[data-stop]", form)) node.hidden = node.dataset.stop !== stopBy;
  const kind = f.payload_kind.value;
  for (const node of $$("[data-payload]", form)) node.hidden = !node.dataset.payload.split(" ").includes(kind);
}
for (const name of ["pattern", "stop_by", "payload_kind"]) f[name].addEventListener("change", applyVisibility);
for (const type of ["input", "change"]) f.target.addEventListener(type, applyVisibility);

function shown(name) {
  const input = f[name];
  return input && !input.closest("[hidden]");
}

function number(name) {
  if (!shown(name) || f[name].value.trim() === "") return undefined;
  return Number(f[name].value);
}

/** The POST /api/runs body the form describes; only the options that apply and are set. */
export function specFromForm() {
  const spec = { target: f.target.value.trim(), pattern: f.pattern.value };
  for (const name of ["connections", "in_flight", "size", "size_max", "rate", "burst", "interval",
    "duration", "count", "warmup", "ramp_up", "timeout"]) {
    const value = number(name);
    if (value !== undefined) spec[name] = value;
  }
  const mbit = number("bitrate_mbit");
  if (mbit !== undefined) spec.bitrate = mbit * 1e6;
  if (shown("insecure") && f.insecure.checked) spec.insecure = true;
  const ttl = number("ttl");
  if (ttl !== undefined) spec.ttl = ttl;
  if (shown("iface") && f.iface.value.trim()) spec.iface = f.iface.value.trim();
  if (shown("loopback") && f.loopback.value) spec.loopback = f.loopback.value === "true";
  // reverse and bidir exclude each other: one select sets at most one of them.
  if (shown("direction") && f.direction.value !== "forward") spec[f.direction.value] = true;
  const kind = f.payload_kind.value;
  if (kind !== "random") {
    spec.payload = { kind };
    if (kind === "text" || kind === "hex") spec.payload.text = f.payload_text.value;
  }
  return spec;
}

function specToForm(spec) {
  form.reset();
  f.target.value = spec.target || "";
  f.pattern.value = spec.pattern || "pingpong";
  for (const name of ["connections", "in_flight", "size", "size_max", "rate", "burst", "interval",
    "duration", "count", "warmup", "ramp_up", "timeout"]) {
    if (f[name]) f[name].value = spec[name] ?? "";
  }
  f.bitrate_mbit.value = spec.bitrate ? spec.bitrate / 1e6 : "";
  f.insecure.checked = Boolean(spec.insecure);
  f.ttl.value = spec.ttl ?? "";
  f.iface.value = spec.iface || "";
  f.loopback.value = spec.loopback == null ? "" : String(spec.loopback);
  f.direction.value = spec.reverse ? "reverse" : spec.bidir ? "bidir" : "forward";
  f.stop_by.value = spec.count ? "count" : "duration";
  const payload = spec.payload || {};
  f.payload_kind.value = payload.kind || "random";
  f.payload_text.value = payload.text || "";
  applyVisibility();
}

// ---- presets ---------------------------------------------------------------------------------
let presets = [];
async function loadPresets() {
  try {
    presets = (await api("GET", "/api/presets")).items || [];
  } catch (e) { return; }
  const select = $("#preset-select");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: presets.length ? "choose…" : "none saved" }),
    ...presets.map((p) => el("option", { value: p.name, text: p.name })));
  if (presets.some((p) => p.name === chosen)) select.value = chosen;
}

function presetMsg(text) { $("#preset-msg").textContent = text; }

$("#preset-load").addEventListener("click", () => {
  const preset = presets.find((p) => p.name === $("#preset-select").value);
  if (!preset) { presetMsg("choose a preset first"); return; }
  specToForm(preset.spec);
  $("#preset-name").value = preset.name;
  presetMsg(`loaded “${preset.name}”`);
});
$("#preset-select").addEventListener("change", () => $("#preset-load").click());
$("#preset-save").addEventListener("click", async () => {
  const name = $("#preset-name").value.trim();
  $("#fire-error").hidden = true;
  if (!name) { presetMsg("give the preset a name"); $("#preset-name").focus(); return; }
  try {
    await api("POST", "/api/presets", { name, spec: specFromForm() });
    await loadPresets();
    $("#preset-select").value = name;
    presetMsg(`saved “${name}”`);
  } catch (err) {
    markField(form, err.field);
    showError($("#fire-error"), err);
  }
});
$("#preset-delete").addEventListener("click", async () => {
  const name = $("#preset-select").value;
  if (!name) { presetMsg("choose a preset first"); return; }
  try {
    await api("DELETE", `/api/presets/${encodeURIComponent(name)}`);
    await loadPresets();
    presetMsg(`deleted “${name}”`);
  } catch (err) { showError($("#fire-error"), err); }
});

// ---- firing and following runs ---------------------------------------------------------------
// Several runs at once: each run this tab fires (or picks) gets a live card of its own
// (liveruns.js); the one selected is shown below the cards with its charts and, once it has
// ended, its result. The Fire button stays usable while runs go.
function progressText(live) {
  const pct = `${(live.progress * 100).toFixed(0)} %`;
  return `${pct} · ${fmtNum(live.received)} replies · ${fmtMsgRate(live.msgs_per_s)} · ` +
    `p50 ${fmtMs(live.rtt_p50_ms)} · p99 ${fmtMs(live.rtt_p99_ms)}` +
    (live.errors ? ` · ${fmtNum(live.errors)} errors` : "");
}

const cards = new RunCards($("#run-cards"), $("#other-runs"), {
  describe: progressText,
  onPick: (id) => showRun(id),
  onEnded: (id) => finish(id),
});
const LIVE = ["running", "paused"];

/** Select run `id` for the view below the cards, following it live. */
function follow(id) {
  current = { id, finishing: false };
  sessionStorage.setItem(SELECTED_RUN, id);
  cards.follow(id);
  $("#progress-run").textContent = `run ${id}`;
  $("#run-progress").hidden = false;
  $("#fire-idle").hidden = true;
  $("#stop-button").disabled = false;
  if (endedRuns.includes(id)) finish(id);
}

function showProgress(live) {
  const bar = $("#progress-bar");
  bar.value = live.progress;
  bar.setAttribute("aria-valuetext", `${(live.progress * 100).toFixed(0)} percent`);
  $("#progress-text").textContent = progressText(live);
}

function showResult(run) {
  $("#result-id").textContent = run.id;
  $("#result-table tbody").replaceChildren(...kvRows(summaryPairs(run)));
  $("#result-pct tbody").replaceChildren(...kvRows(pctPairs(run)));
  showFailures($("#result-failures-box"), $("#result-failures"), run.summary);
  showSteps($("#result-steps-box"), $("#result-steps"), run.summary);
  charts.explain(run);
  const reply = run.summary.reply;
  const replyNode = $("#result-reply");
  replyNode.hidden = !reply;
  // reply.text is already escaped by the lab (\n, \xNN): shown as it is, in quotes.
  if (reply) {
    replyNode.replaceChildren("Reply: ", el("code", { class: "reply-hex", text: reply.hex }), " ",
      el("code", { class: "reply-text", text: `"${reply.text}"` }), " · ", figure("reply.bytes", "bytes", reply.bytes),
      " · ", figure("reply.rtt_ms", "ms", reply.rtt_ms));
  }
  renderVerdict($("#result-verdict"), run.summary);
  $("#run-result").hidden = false;
}

async function finish(id) {
  if (!current || current.id !== id || current.finishing) return;
  current.finishing = true;
  try {
    const run = await api("GET", `/api/runs/${id}`);
    if (LIVE.includes(run.status)) { current.finishing = false; return; }
    current = null;
    $("#stop-button").disabled = true;
    $("#progress-bar").value = 1;
    $("#progress-text").textContent = `100 % · ${run.status}`;
    charts.setSeries(run.series);
    showResult(run);
    document.dispatchEvent(new CustomEvent("socketlab:run-ended", { detail: run }));
  } catch (err) {
    current.finishing = false;
    showError($("#fire-error"), err);
  }
}

feed.on("tick", (msg) => {
  const runs = msg.runs || [];
  cards.tick(runs);
  if (!current) return;
  const live = runs.find((r) => r.id === current.id);
  if (live && LIVE.includes(live.status)) {
    showProgress(live);
    if (live.point && live.point.t > charts.lastT()) charts.push(live.point);
  }
});

// The lab says when a run is over (once it is stored), on the same feed as the ticks.
feed.on("run.ended", (msg) => {
  endedRuns.push(msg.run_id);
  if (endedRuns.length > ENDED_KEPT) endedRuns.shift();
  cards.ended(msg.run_id);
  if (current && current.id === msg.run_id) finish(msg.run_id);
});

// A full state comes after a reconnect or after this browser fell behind, when "run.ended"
// messages may have been lost: a followed run missing from it is asked about once.
feed.on("full", (msg) => {
  const going = new Set((msg.runs || []).map((r) => r.id));
  for (const id of cards.ids()) if (!going.has(id)) cards.ended(id);
  if (current && !going.has(current.id)) finish(current.id);
});

/** Show a stored or running run: its charts from the server's series, then follow it live. */
async function showRun(id) {
  try {
    const run = await api("GET", `/api/runs/${id}`);
    sessionStorage.setItem(SELECTED_RUN, id);
    charts.setSeries(run.series);
    charts.explain(run);
    $("#run-progress").hidden = false;
    $("#fire-idle").hidden = true;
    $("#progress-run").textContent = `run ${id}`;
    if (LIVE.includes(run.status)) {
      $("#run-result").hidden = true;
      follow(id);
      const s = run.summary;
      showProgress({ progress: run.progress, received: s.received, errors: s.errors, msgs_per_s: s.msgs_per_s });
    } else {
      if (current && current.id !== id) current = null;
      $("#stop-button").disabled = true;
      $("#progress-bar").value = 1;
      $("#progress-text").textContent = `100 % · ${run.status}`;
      showResult(run);
    }
    if (run.spec && !f.target.value) specToForm(run.spec);
  } catch (err) {
    if (err.status === 404) sessionStorage.removeItem(SELECTED_RUN);
  }
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#fire-error").hidden = true;
  markField(form, null);
  const spec = specFromForm();
  // Held only while the request is answered (no double submit); runs already going do not
  // hold it: another one may be fired beside them.
  $("#fire-button").disabled = true;
  try {
    const run = await api("POST", "/api/runs", spec);
    charts.setSeries([]);
    // What the run measures (no RTT chart for a sink or TCP bulk) is known once it exists.
    api("GET", `/api/runs/${run.id}`).then((doc) => charts.explain(doc), () => {});
    $("#run-result").hidden = true;
    $("#progress-bar").value = 0;
    $("#progress-text").textContent = "starting…";
    follow(run.id);
  } catch (err) {
    markField(form, err.field);
    showError($("#fire-error"), err);
  } finally {
    $("#fire-button").disabled = false;
  }
});

$("#stop-button").addEventListener("click", async () => {
  if (!current) return;
  const id = current.id;
  $("#stop-button").disabled = true;
  try {
    await api("POST", `/api/runs/${id}/stop`);
    finish(id);
  } catch (err) {
    if (err.status === 404) finish(id);
    else { $("#stop-button").disabled = false; showError($("#fire-error"), err); }
  }
});

// ---- defaults from the lab's own listeners ------------------------------------------------------
feed.on("tick", () => {
  const list = $("#target-list");
  const targets = listenerTargets(state.listeners);
  const key = targets.map((t) => t.url).join(" ");
  if (list.dataset.key !== key) {
    list.dataset.key = key;
    list.replaceChildren(...targets.map((t) => el("option", { value: t.url, text: `${t.listener.id} · ${t.listener.mode}` })));
  }
  if (!f.target.value) {
    const echo = targets.find((t) => t.listener.protocol === "tcp" && t.listener.mode === "echo");
    if (echo) f.target.value = echo.url;
  }
});

applyVisibility();
let started = false;
registerSection("fire", {
  show(arg) {
    loadPresets();
    if (arg.startsWith(COMPARE_ROUTE)) {
      // #fire/compare/<id>: a comparison of transports (compare_transports.js shows it).
      document.dispatchEvent(new CustomEvent("socketlab:compare", { detail: arg.slice(COMPARE_ROUTE.length) }));
      return;
    }
    if (arg) { showRun(arg); return; }
    if (!started) {
      started = true;
      cards.restore();
      const last = sessionStorage.getItem(SELECTED_RUN);
      if (last && !current) showRun(last);
    }
  },
});
