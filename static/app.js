// socketlab dashboard: a tabbed single page over one live WebSocket and the JSON API.
import { $, $$, refreshTimes, timeEl } from "./js/util.js";
import { connect, feed } from "./js/feed.js";
import { state, sectionHooks } from "./js/state.js";
import "./js/overview.js";
import "./js/connections.js";
import "./js/fire.js";
import "./js/compare_transports.js";
import "./js/runs.js";
import "./js/telemetry.js";
import "./js/packet.js";
import "./js/scenarios.js";
import "./js/listeners.js";
import "./js/peers.js";
import "./js/mesh.js";
import "./js/health.js";
import "./js/layout.js";

const SECTIONS = [
  "overview", "connections", "fire", "runs", "telemetry", "packet", "scenarios", "listeners", "peers", "mesh",
];

function route() {
  const [name, ...rest] = location.hash.replace(/^#/, "").split("/");
  const section = SECTIONS.includes(name) ? name : "overview";
  const previous = state.section;
  state.section = section;
  for (const id of SECTIONS) {
    const node = document.getElementById(id);
    node.hidden = id !== section;
  }
  for (const link of $$("#tabs a")) {
    if (link.dataset.tab === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `socketlab · ${section}`;
  if (previous !== section) sectionHooks(previous)?.hide?.();
  sectionHooks(section)?.show?.(rest.join("/"));
  refreshTimes();
}

window.addEventListener("hashchange", route);

let lastUpdateShown = 0;
function showLastUpdate() {
  if (state.t && state.t !== lastUpdateShown) {
    lastUpdateShown = state.t;
    $("#last-update").replaceChildren("last update ", timeEl(state.t));
  }
}

feed.on("tick", () => {
  $("#nav-conns").textContent = Number(state.total).toLocaleString("en-US");
  if (!lastUpdateShown) showLastUpdate();
});

setInterval(() => {
  refreshTimes();
  showLastUpdate();
}, 1000);

route();
connect();
