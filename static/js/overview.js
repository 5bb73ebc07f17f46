// Overview: lab totals, throughput and connection charts rebuilt from the server's series.
import { $, api, cell, el, fmtByteRate, fmtBytes, fmtMs, fmtMsgRate, fmtNum } from "./util.js";
import { Chart } from "./charts.js";
import { feed } from "./feed.js";
import { registerSection, state } from "./state.js";

const throughput = new Chart($("#chart-throughput"), {
  x: { time: true, minSpan: 60 },
  series: [
    { label: "received", fmt: fmtByteRate, integer: true },
    { label: "sent", fmt: fmtByteRate, integer: true },
  ],
});
const conns = new Chart($("#chart-conns"), {
  x: { time: true, minSpan: 60 },
  series: [{ label: "open", fmt: (v) => fmtNum(v), integer: true }],
});

let lastPoint = null;

async function loadSeries() {
  try {
    const doc = await api("GET", "/api/series");
    const points = doc.points || [];
    throughput.setData([points.map((p) => p.t), points.map((p) => p.bytes_in), points.map((p) => p.bytes_out)]);
    conns.setData([points.map((p) => p.t), points.map((p) => p.connections)]);
    if (points.length) lastPoint = points[points.length - 1];
    render();
  } catch (e) { /* the banner says when the lab is away */ }
}

function render() {
  $("#kpi-conns").textContent = fmtNum(state.total);
  $("#kpi-in").textContent = fmtByteRate(lastPoint ? lastPoint.bytes_in : 0);
  $("#kpi-out").textContent = fmtByteRate(lastPoint ? lastPoint.bytes_out : 0);
  $("#kpi-listeners").textContent = fmtNum(state.listeners.length);
  const going = state.runs.filter((r) => r.status === "running");
  $("#kpi-runs").textContent = fmtNum(going.length);
  const rates = (lastPoint && lastPoint.listeners) || {};
  $("#ov-listeners tbody").replaceChildren(...state.listeners.map((l) => {
    const rate = rates[l.id] || {};
    return el("tr", { dataset: { id: l.id } },
      cell(l.id, "mono"), cell(l.url, "url"), cell(l.mode), cell(fmtNum(l.connections), "num"),
      cell(fmtNum(l.accepted), "num"), cell(fmtBytes(l.bytes_in), "num"),
      cell(fmtBytes(l.bytes_out), "num"), cell(fmtByteRate(rate.bytes_in), "num"),
      cell(fmtByteRate(rate.bytes_out), "num"), cell(fmtNum(l.msgs_in), "num"));
  }));
  $("#ov-runs tbody").replaceChildren(...going.map((r) => el("tr", { dataset: { id: r.id } },
    cell(el("a", { href: `#fire/${r.id}`, class: "mono", text: r.id })), cell(r.target || "–"),
    cell(el("progress", { max: "1", value: String(r.progress || 0), "aria-label": `run ${r.id} progress` })),
    cell(fmtNum(r.received), "num"), cell(fmtMsgRate(r.msgs_per_s), "num"),
    cell(fmtMs(r.rtt_p50_ms), "num"), cell(fmtMs(r.rtt_p99_ms), "num"))));
  $("#ov-runs-empty").hidden = going.length > 0;
}

let queued = false;
feed.on("tick", (msg) => {
  if (msg.point) {
    lastPoint = msg.point;
    throughput.push(msg.point.t, [msg.point.bytes_in, msg.point.bytes_out]);
    conns.push(msg.point.t, [msg.point.connections]);
  }
  if (state.section === "overview" && !queued) {
    queued = true;
    requestAnimationFrame(() => { queued = false; render(); });
  }
});
feed.on("full", loadSeries);

registerSection("overview", { show: render });
