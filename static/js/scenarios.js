// Scenarios: a step editor with a text view (TOML or JSON, kept in sync), saved scenarios,
// a dry run of one session showing each exchange, and firing it as a scenario run whose
// per-step table follows the run live.
import { $, api, el, fmtMs, markField, showError, timeEl } from "./util.js";
import { registerSection } from "./state.js";
import { hexdump } from "./packet.js";
import { showSteps } from "./steptable.js";
import { scenarioToml } from "./toml.js";

const form = $("#scn-form");
const f = form.elements;
const list = $("#scn-steps");
const text = $("#scn-text");
const textError = $("#scn-text-error");
const errorBox = $("#scn-error");

// The fields each action shows in the editor: [key, label, kind, options].
const FIELDS = {
  send: [["send", "send", "text"], ["encoding", "as", "select", ["text", "hex"]]],
  expect: [["expect", "expect", "text"], ["match", "match", "select", ["exact", "prefix", "contains", "regex"]],
    ["framing", "framing", "select", ["line", "length", "read"]], ["length", "length", "number"],
    ["timeout", "timeout (s)", "number"], ["encoding", "as", "select", ["text", "hex"]]],
  capture: [["capture", "regex", "text"]],
  delay: [["delay", "seconds (or low,high)", "delay"]],
  repeat: [["repeat", "times", "number"], ["repeat_for", "or seconds", "number"], ["steps", "steps (JSON)", "json"]],
  close: [],
  reconnect: [],
};
const NEW_STEP = {
  send: { send: "PING\\r\\n" },
  expect: { expect: "+PONG" },
  capture: { capture: "(?P<value>[0-9]+)" },
  delay: { delay: 0.1 },
  repeat: { repeat: 2, steps: [{ send: "PING\\r\\n" }, { expect: "+PONG" }] },
  close: { close: true },
  reconnect: { reconnect: true },
};
const ACTIONS = ["send", "expect", "capture", "delay", "repeat_for", "repeat", "close", "reconnect"];

let doc = { steps: [{ send: "PING\\r\\n" }, { expect: "+PONG" }] };
let savedName = null; // the saved scenario the editor holds, unchanged since loaded or saved
let following = null; // the run whose per-step table is shown while it goes

const actionOf = (step) => (ACTIONS.find((k) => k in step) || "send").replace("repeat_for", "repeat");

function fieldValue(step, [key, , kind]) {
  const v = step[key];
  if (v == null) return "";
  if (kind === "delay") return Array.isArray(v) ? v.join(",") : String(v);
  if (kind === "json") return JSON.stringify(v);
  return String(v);
}

function readField(kind, raw) {
  if (raw.trim() === "") return undefined;
  if (kind === "number") return Number(raw);
  if (kind === "delay") {
    const parts = raw.split(",").map((p) => Number(p.trim()));
    return parts.length > 1 ? parts.slice(0, 2) : parts[0];
  }
  if (kind === "json") return JSON.parse(raw);
  return raw;
}

function stepEditor(step, index) {
  const action = actionOf(step);
  const inputs = FIELDS[action].map((spec) => {
    const [key, label, kind, options] = spec;
    let input;
    if (kind === "select") {
      input = el("select", { name: key }, ...options.map((o) => el("option", { value: o, text: o })));
      input.value = step[key] ?? options[0];
    } else {
      input = el(kind === "json" ? "textarea" : "input", {
        name: key, class: kind === "text" || kind === "json" ? "mono" : null,
        type: kind === "number" ? "number" : null, step: kind === "number" ? "any" : null,
      });
      input.value = fieldValue(step, spec);
    }
    input.addEventListener("change", () => {
      try {
        const value = readField(kind, input.value);
        const next = { ...doc.steps[index] };
        if (value === undefined || (kind === "select" && value === options[0] && !(key in step))) delete next[key];
        else next[key] = value;
        doc.steps[index] = next;
        changed();
      } catch (err) {
        showTextError(`steps.${index}.${key}: ${err.message}`);
      }
    });
    return el("label", {}, `${label} `, input);
  });
  const move = (delta) => () => {
    const to = index + delta;
    if (to < 0 || to >= doc.steps.length) return;
    [doc.steps[index], doc.steps[to]] = [doc.steps[to], doc.steps[index]];
    changed();
  };
  const remove = () => {
    doc.steps.splice(index, 1);
    changed();
  };
  return el("li", { class: "scn-step", dataset: { index: String(index), action } },
    el("span", { class: "scn-action mono", text: action }),
    ...inputs,
    el("span", { class: "scn-step-buttons" },
      el("button", { type: "button", class: "secondary small", title: "move up", "aria-label": `move step ${index} up`, onclick: move(-1), text: "↑" }),
      el("button", { type: "button", class: "secondary small", title: "move down", "aria-label": `move step ${index} down`, onclick: move(1), text: "↓" }),
      el("button", { type: "button", class: "secondary small", title: "remove", "aria-label": `remove step ${index}`, onclick: remove, text: "✕" })));
}

function renderEditor() {
  list.replaceChildren(...doc.steps.map(stepEditor));
}

function renderText() {
  text.value = $("#scn-format").value === "json" ? `${JSON.stringify(doc, null, 2)}\n` : scenarioToml(doc);
}

function showTextError(message) {
  textError.textContent = message;
  textError.hidden = false;
}

/** The document changed: redraw the editor, and the text unless the text changed it. */
function changed({ fromText = false } = {}) {
  savedName = null;
  textError.hidden = true;
  renderEditor();
  if (!fromText) renderText();
}

// The text view: parsed and checked by the lab (TOML has no parser in the page), then the
// editor follows. What is wrong is shown with the step and field it names.
let parseSeq = 0;
async function parseText() {
  const seq = ++parseSeq;
  try {
    const answer = await api("POST", "/api/scenarios/parse", { text: text.value, format: $("#scn-format").value });
    if (seq !== parseSeq) return;
    doc = answer.scenario;
    changed({ fromText: true });
  } catch (err) {
    if (seq !== parseSeq) return;
    showTextError(err.field ? `${err.message} (field: ${err.field})` : err.message);
  }
}
let parseTimer = null;
text.addEventListener("input", () => {
  clearTimeout(parseTimer);
  parseTimer = setTimeout(parseText, 400);
});
$("#scn-format").addEventListener("change", renderText);

$("#scn-add").addEventListener("click", () => {
  const kind = $("#scn-add-kind").value;
  doc.steps.push(structuredClone(NEW_STEP[kind]));
  changed();
});

function clearError() {
  errorBox.hidden = true;
  markField(form, null);
  for (const li of list.children) li.classList.remove("field-error");
}

function fail(err) {
  showError(errorBox, err);
  markField(form, err.field);
  // An error in the steps names one (scenario.steps.2.expect): that step is marked.
  const step = /^scenario\.steps\.(\d+)/.exec(err.field || "");
  for (const li of list.children) li.classList.toggle("field-error", Boolean(step) && li.dataset.index === step[1]);
}

// ---- dry run ----------------------------------------------------------------------------

function bytesCell(b) {
  if (!b) return el("td", { text: "–" });
  return el("td", { class: "bytes" },
    el("code", { class: "x-text", text: `"${b.text}"` }),
    el("pre", { class: "hexdump x-hex", dataset: { hex: b.hex }, text: hexdump(b.hex) }));
}

function transcriptRow(x) {
  const result = x.ok ? "pass" : `fail: ${x.kind}`;
  return el("tr", { class: x.ok ? "ok" : "failed", dataset: { step: x.step, action: x.action } },
    el("th", { scope: "row", class: "mono", text: x.step }),
    el("td", { text: x.action }),
    el("td", { class: "x-result", text: result }),
    bytesCell(x.sent),
    bytesCell(x.received),
    el("td", { class: "num" }, x.latency_ms == null ? "–" : el("span", { class: "fig", dataset: { unit: "ms" }, text: fmtMs(x.latency_ms) })));
}

async function dryRun() {
  clearError();
  $("#scn-msg").textContent = "dry run…";
  try {
    const result = await api("POST", "/api/scenarios/dry-run", { target: f.target.value.trim(), scenario: doc, insecure: f.insecure.checked });
    $("#scn-transcript tbody").replaceChildren(...result.exchanges.map(transcriptRow));
    const outcome = $("#scn-dry-outcome");
    outcome.textContent = result.ok ? "every step passed" : result.error;
    outcome.className = result.ok ? "pill ok" : "pill failed";
    $("#scn-dry-box").hidden = false;
    $("#scn-msg").textContent = "";
  } catch (err) {
    $("#scn-msg").textContent = "";
    fail(err);
  }
}
$("#scn-dry").addEventListener("click", dryRun);

// ---- saved scenarios --------------------------------------------------------------------

async function loadSaved() {
  let items = [];
  try {
    items = (await api("GET", "/api/scenarios")).items;
  } catch (err) {
    fail(err);
    return;
  }
  $("#scn-saved tbody").replaceChildren(...items.map((item) => el("tr", { dataset: { name: item.name } },
    el("th", { scope: "row", text: item.name }),
    el("td", { class: "num", text: String(item.scenario.steps.length) }),
    el("td", {}, timeEl(item.updated_at)),
    el("td", {},
      el("button", { type: "button", class: "secondary small", onclick: () => load(item), text: "Load" }), " ",
      el("button", { type: "button", class: "secondary small", onclick: () => remove(item.name), text: "Delete" })))));
}

function load(item) {
  doc = structuredClone(item.scenario);
  f.name.value = item.name;
  changed();
  savedName = item.name;
  $("#scn-msg").textContent = `loaded ${item.name}`;
}

async function remove(name) {
  try {
    await api("DELETE", `/api/scenarios/${encodeURIComponent(name)}`);
    if (savedName === name) savedName = null;
    $("#scn-msg").textContent = `deleted ${name}`;
  } catch (err) {
    fail(err);
  }
  loadSaved();
}

async function save() {
  clearError();
  const name = f.name.value.trim();
  try {
    try {
      await api("POST", "/api/scenarios", { name, scenario: doc });
    } catch (err) {
      if (err.status !== 409) throw err;
      await api("PUT", `/api/scenarios/${encodeURIComponent(name)}`, { scenario: doc });
    }
    savedName = name;
    $("#scn-msg").textContent = `saved ${name}`;
    loadSaved();
  } catch (err) {
    fail(err);
  }
}
$("#scn-save").addEventListener("click", save);

// ---- fire and follow --------------------------------------------------------------------

function runBody() {
  const body = { target: f.target.value.trim(), pattern: "scenario", scenario: savedName || doc };
  if (f.insecure.checked) body.insecure = true;
  if (f.connections.value.trim()) body.connections = Number(f.connections.value);
  const by = f.stop_by.value;
  if (f[by].value.trim()) body[by] = Number(f[by].value);
  return body;
}

function showRun(run) {
  const status = $("#scn-run-status");
  status.textContent = run.status;
  status.className = `pill ${run.status}`;
  showSteps($("#scn-steps-box"), $("#scn-step-table"), run.summary);
}

async function followRun(id) {
  following = id;
  $("#scn-run-id").textContent = id;
  $("#scn-run-id").href = `#runs/${id}`;
  $("#scn-run-box").hidden = false;
  // Polled once a second: the document of the run is what the table shows, as it is.
  while (following === id) {
    let run;
    try {
      run = await api("GET", `/api/runs/${id}`);
    } catch (err) {
      fail(err);
      return;
    }
    if (following !== id) return;
    showRun(run);
    if (run.status !== "running") return;
    await new Promise((resolve) => { setTimeout(resolve, 1000); });
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  try {
    const ref = await api("POST", "/api/runs", runBody());
    $("#scn-msg").textContent = `fired ${ref.id}`;
    followRun(ref.id);
  } catch (err) {
    fail(err);
  }
});

function showStopBy() {
  f.duration.closest("label").hidden = f.stop_by.value !== "duration";
  f.iterations.closest("label").hidden = f.stop_by.value !== "iterations";
}
f.stop_by.addEventListener("change", showStopBy);
showStopBy();

renderEditor();
renderText();
registerSection("scenarios", { show: loadSaved });
