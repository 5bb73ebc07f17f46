// Telemetry, the section: while shown, polls GET /api/telemetry once a second and hands the
// document to the StatsD view (tmstatsd.js), refreshes the series list of every collector
// and its open charts (tmseries.js) and the syslog log view (tmlogs.js).
import { $, api, debounce } from "./util.js";
import { registerSection } from "./state.js";
import { refreshHistories, renderStatsd } from "./tmstatsd.js";
import { refreshSeries } from "./tmseries.js";
import { bindLogFilters, refreshLogs } from "./tmlogs.js";

let timer = null;
let searchBound = false;

async function poll() {
  let doc;
  try {
    doc = await api("GET", "/api/telemetry");
    renderStatsd(doc);
  } catch (err) {
    $("#tm-status").textContent = err.status === 404 ? "This lab has no telemetry API." : err.message;
    return;
  }
  await Promise.all([refreshHistories(doc), refreshSeries(), refreshLogs()]);
}

registerSection("telemetry", {
  show() {
    if (!searchBound) {
      searchBound = true;
      $("#tm-search").addEventListener("input", debounce(() => refreshSeries(), 200));
      bindLogFilters();
    }
    poll();
    clearInterval(timer);
    timer = setInterval(poll, 1000);
  },
  hide() { clearInterval(timer); timer = null; },
});
