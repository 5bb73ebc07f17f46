// The HTML report of one run: the run document embedded in the page, drawn by the
// dashboard's own code (inlined into the page by the server, so it opens offline).
import { $, el, fmtMs, fmtNum, kvRows, timeEl } from "./util.js";
import { Chart } from "./charts.js";
import { describeSpec, pctPairs, runCharts, statusPill, summaryPairs } from "./runview.js";
import { showFailures } from "./failures.js";
import { showSteps } from "./steptable.js";

const run = JSON.parse($("#run-doc").textContent);
const s = run.summary;

$("#report-status").replaceWith(Object.assign(statusPill(run.status), { id: "report-status" }));
$("#report-spec").textContent = describeSpec(run.spec);
$("#report-spec-json").textContent = JSON.stringify(run.spec, null, 2);
const generated = $("#report-generated");
generated.replaceChildren(timeEl(Number(generated.dataset.t)));
document.title = `socketlab run ${run.id} report · ${run.status}`;

if (s) {
  $("#report-summary tbody").replaceChildren(...kvRows(summaryPairs(run)));
  $("#report-pct tbody").replaceChildren(...kvRows(pctPairs(run)));
  showFailures($("#report-failures-box"), $("#report-failures"), s);
  showSteps($("#report-steps-box"), $("#report-steps"), s);
  const reply = s.reply;
  if (reply && reply.bytes) {
    const node = $("#report-reply");
    node.replaceChildren("Reply: ", el("code", { text: reply.hex }), " ", el("code", { text: reply.text }));
    node.hidden = false;
  }
  const charts = runCharts($("#report-chart-rtt"), $("#report-chart-tput"));
  charts.setSeries(run.series);
  charts.explain(run);

  const hist = s.histogram || [];
  $("#report-hist-box").hidden = hist.length === 0;
  if (hist.length) {
    const label = (i) => { const upper = hist[Math.round(i)]; return upper ? fmtMs(upper[0]) : ""; };
    const chart = new Chart($("#report-chart-hist"), {
      x: { time: false, fmt: label, label: "RTT up to", integer: true },
      series: [{ label: "messages", fmt: (v) => fmtNum(v), bars: true, integer: true }],
    });
    chart.setData([hist.map((b, i) => i), hist.map((b) => b[1])]);
  }
}
document.body.dataset.ready = "1";
