// Live run cards on the Fire page: one per run this tab follows, each with its own progress,
// a small chart of its per-second series (sent and the rate it is held to) and its controls
// (pause/resume, stop, a new rate or number of connections: PATCH /api/runs/{id}).
//
// Which runs a tab follows is the tab's own (sessionStorage: a reload keeps them, another tab
// does not see them): a run started elsewhere is listed apart and followed only when picked.
import { api, el, fmtMsgRate, fmtNum, fmtSeconds } from "./util.js";
import { Chart } from "./charts.js";

const FOLLOWED = "socketlab.fire.followed";
const LIVE = new Set(["running", "paused"]);

function saved() {
  try { return JSON.parse(sessionStorage.getItem(FOLLOWED) || "[]").filter((id) => typeof id === "string"); } catch (e) { return []; }
}

/** What the run is held to now: "target 200 msg/s · 2 connections · paused". */
export function settingsText(control) {
  if (!control) return "";
  const parts = [];
  if (control.rate_target != null) parts.push(`target ${fmtMsgRate(control.rate_target)}`);
  if (control.connections != null) parts.push(`${fmtNum(control.connections)} conn`);
  if (control.paused) parts.push("paused");
  return parts.join(" · ");
}

/** One live edit as a line: "at 2.10 s: rate 200 msg/s". */
export function editText(edit) {
  const parts = [];
  if (edit.rate_target != null) parts.push(`rate ${fmtMsgRate(edit.rate_target)}`);
  if (edit.connections != null) parts.push(`${fmtNum(edit.connections)} conn`);
  if (edit.paused === true) parts.push("paused");
  if (edit.paused === false) parts.push("resumed");
  return `at ${fmtSeconds(edit.t)}: ${parts.join(", ")}`;
}

/** The newest closed second of a run's series, as the card shows it. */
export function lastSecondText(point) {
  if (!point) return "";
  const target = point.rate_target != null ? ` (target ${fmtMsgRate(point.rate_target)})` : "";
  return `second ${fmtSeconds(point.t)}: sent ${fmtMsgRate(point.sent_per_s)}${target}`;
}

class RunCard {
  constructor(cards, id) {
    this.cards = cards;
    this.id = id;
    this.status = "running";
    this.control = null;
    // The action is read when clicked: the pause button turns into a resume button.
    const button = (action, text, cls = "secondary small") =>
      el("button", { type: "button", class: cls, dataset: { action }, text, onclick: (ev) => this.act(ev.currentTarget.dataset.action) });
    this.pill = el("span", { class: "pill run", text: "running" });
    this.label = el("span", { class: "muted run-card-spec" });
    this.bar = el("progress", { class: "run-card-bar", max: "1", value: "0", "aria-label": `Progress of run ${id}` });
    this.text = el("span", { class: "run-card-text", "aria-live": "polite", text: "starting…" });
    this.settings = el("p", { class: "run-card-settings" });
    this.last = el("p", { class: "run-card-last muted" });
    this.edits = el("ol", { class: "run-card-edits muted" });
    this.error = el("p", { class: "run-card-error banner error", role: "alert", hidden: true });
    this.chartNode = el("div", { class: "chart run-card-chart", dataset: { points: "0" } });
    this.pauseButton = button("pause", "Pause");
    this.stopButton = button("stop", "Stop", "danger small");
    this.rateInput = el("input", { name: "rate", type: "number", min: "0", step: "any", "aria-label": `New rate of run ${id} (msg/s)` });
    this.connInput = el("input", { name: "connections", type: "number", min: "1", step: "1", "aria-label": `New connections of run ${id}` });
    this.rateField = el("label", { class: "run-card-field", hidden: true }, "Rate (msg/s) ", this.rateInput);
    this.connField = el("label", { class: "run-card-field", hidden: true }, "Connections ", this.connInput);
    this.applyButton = button("apply", "Apply");
    this.editForm = el("form", { class: "run-card-edit", onsubmit: (ev) => { ev.preventDefault(); this.act("apply"); } },
      this.rateField, this.connField, this.applyButton);
    this.controls = el("div", { class: "run-card-controls" }, this.pauseButton, this.stopButton, this.editForm);
    this.node = el("article", { class: "run-card", dataset: { run: id }, "aria-label": `run ${id}` },
      el("div", { class: "run-card-head" },
        el("button", { type: "button", class: "link mono run-card-pick", text: `run ${id}`, title: "show its charts and result below", onclick: () => cards.onPick(id) }),
        this.pill, this.label,
        el("button", { type: "button", class: "secondary small run-card-close", "aria-label": `Stop following run ${id}`, text: "×", onclick: () => cards.forget(id) })),
      el("div", { class: "progress-line" }, this.bar, this.text),
      this.settings, this.controls, this.error, this.chartNode, this.last, this.edits);
    this.chart = new Chart(this.chartNode, {
      height: 110,
      x: { time: false, fmt: (v) => `${+v.toFixed(1)} s`, seconds: true, minSpan: 5, from0: true },
      series: [
        { label: "sent", fmt: fmtMsgRate, axisFmt: (v) => `${fmtNum(v)}/s` },
        { label: "target", fmt: fmtMsgRate, axisFmt: (v) => `${fmtNum(v)}/s` },
      ],
    });
  }

  setSeries(series) {
    const points = series || [];
    this.chart.setData([points.map((p) => p.t), points.map((p) => p.sent_per_s ?? null), points.map((p) => p.rate_target ?? null)]);
    this.last.textContent = lastSecondText(points[points.length - 1]);
  }

  push(point) {
    if (!point) return;
    const xs = this.chart.data[0];
    if (xs.length && point.t <= xs[xs.length - 1]) return;
    this.chart.push(point.t, [point.sent_per_s ?? null, point.rate_target ?? null]);
    this.last.textContent = lastSecondText(point);
  }

  setStatus(status) {
    this.status = status;
    this.pill.textContent = status;
    this.pill.className = `pill ${{ finished: "ok", running: "run", paused: "warn", failed: "bad" }[status] || "warn"}`;
    const live = LIVE.has(status);
    this.controls.hidden = !live;
    this.pauseButton.textContent = status === "paused" ? "Resume" : "Pause";
    this.pauseButton.dataset.action = status === "paused" ? "resume" : "pause";
  }

  setControl(control) {
    if (!control) return;
    this.control = control;
    this.settings.textContent = settingsText(control);
    const editable = control.editable || [];
    this.rateField.hidden = !editable.includes("rate");
    this.connField.hidden = !editable.includes("connections");
    this.applyButton.hidden = this.rateField.hidden && this.connField.hidden;
    this.pauseButton.hidden = !editable.includes("paused");
    if (!this.rateInput.value && control.rate_target != null) this.rateInput.placeholder = String(control.rate_target);
    if (!this.connInput.value) this.connInput.placeholder = String(control.connections);
    const edits = control.edits || [];
    if (this.edits.childElementCount !== edits.length) {
      this.edits.replaceChildren(...edits.map((e) => el("li", { text: editText(e) })));
    }
  }

  /** A live record from the feed (Run.live): progress, counters, settings. */
  update(live) {
    this.bar.value = live.progress;
    this.text.textContent = this.cards.describe(live);
    this.setStatus(live.status);
    this.setControl(live.control);
    if (live.point) this.push(live.point);
  }

  /** The run's document (GET /api/runs/{id}), live or ended. */
  show(run) {
    this.label.textContent = `${run.spec.pattern || "pingpong"} · ${run.spec.target}`;
    this.setStatus(run.status);
    this.setControl(run.control);
    this.setSeries(run.series);
    if (LIVE.has(run.status)) {
      this.bar.value = run.progress;
    } else {
      this.bar.value = 1;
      this.text.textContent = `100 % · ${run.status}`;
    }
  }

  async act(action) {
    this.error.hidden = true;
    const path = `/api/runs/${this.id}`;
    try {
      let doc;
      if (action === "apply") {
        const body = {};
        if (!this.rateField.hidden && this.rateInput.value.trim() !== "") body.rate = Number(this.rateInput.value);
        if (!this.connField.hidden && this.connInput.value.trim() !== "") body.connections = Number(this.connInput.value);
        if (!Object.keys(body).length) return;
        doc = await api("PATCH", path, body);
        this.rateInput.value = "";
        this.connInput.value = "";
      } else {
        doc = await api("POST", `${path}/${action}`);
      }
      if (action === "stop") {
        await this.cards.ended(this.id);
        this.cards.onEnded(this.id);
        return;
      }
      this.setStatus(doc.status);
      this.setControl(doc.control);
    } catch (err) {
      this.error.textContent = err.field ? `${err.message} (field: ${err.field})` : err.message;
      this.error.hidden = false;
    }
  }
}

/**
 * The cards of the runs this tab follows, in `container`, and the list of the other runs
 * going on the lab in `others`.
 *
 * describe(live): the progress line of a live record; onPick(id): show the run below;
 * onEnded(id): a followed run has ended (or was stopped from its card).
 */
export class RunCards {
  constructor(container, others, { describe, onPick, onEnded }) {
    this.container = container;
    this.others = others;
    this.describe = describe;
    this.onPick = onPick;
    this.onEnded = onEnded;
    this.cards = new Map();
  }

  ids() { return [...this.cards.keys()]; }

  has(id) { return this.cards.has(id); }

  save() { sessionStorage.setItem(FOLLOWED, JSON.stringify(this.ids())); }

  /** Follow run `id`: a card, filled from its document (series included). */
  async follow(id) {
    if (this.cards.has(id)) return this.cards.get(id);
    const card = new RunCard(this, id);
    this.cards.set(id, card);
    this.container.prepend(card.node);
    this.container.hidden = false;
    this.save();
    try {
      card.show(await api("GET", `/api/runs/${id}`));
    } catch (err) {
      if (err.status === 404) this.forget(id);
    }
    return card;
  }

  /** Follow again what this tab followed before a reload. */
  restore() {
    for (const id of saved().reverse()) this.follow(id);
  }

  forget(id) {
    const card = this.cards.get(id);
    if (!card) return;
    card.node.remove();
    this.cards.delete(id);
    this.container.hidden = this.cards.size === 0;
    this.save();
  }

  /** A feed tick's run records: update the followed cards, list the others. */
  tick(runs) {
    for (const live of runs) {
      const card = this.cards.get(live.id);
      if (card && LIVE.has(live.status)) card.update(live);
    }
    const others = runs.filter((r) => !this.cards.has(r.id) && LIVE.has(r.status));
    const key = others.map((r) => `${r.id}:${r.status}`).join(" ");
    if (this.others.dataset.key === key) {
      for (const r of others) {
        const text = this.others.querySelector(`[data-run="${r.id}"] .run-other-progress`);
        if (text) text.textContent = `${(r.progress * 100).toFixed(0)} %`;
      }
      return;
    }
    this.others.dataset.key = key;
    this.others.hidden = others.length === 0;
    this.others.replaceChildren(
      el("span", { class: "muted", text: "Also going on this lab: " }),
      ...others.map((r) => el("span", { class: "run-other", dataset: { run: r.id } },
        el("span", { class: "mono", text: `run ${r.id}` }), " ",
        el("span", { class: "muted", text: `${r.pattern || ""} · ${r.target} · ${r.status} · ` }),
        el("span", { class: "run-other-progress", text: `${(r.progress * 100).toFixed(0)} %` }), " ",
        el("button", { type: "button", class: "secondary small", dataset: { action: "follow" }, text: "Follow", onclick: () => this.onPick(r.id) }))),
    );
  }

  /** A followed run has ended: its card shows the final state from its stored document. */
  async ended(id) {
    const card = this.cards.get(id);
    if (!card) return;
    try {
      const run = await api("GET", `/api/runs/${id}`);
      if (!LIVE.has(run.status)) card.show(run);
    } catch (err) { /* the next tick or a reload shows it */ }
  }
}
