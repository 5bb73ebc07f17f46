// The lab's health: a banner while the store cannot write (GET /api/health says why).
import { $, api } from "./util.js";

const POLL_MS = 5000;

async function check() {
  let health;
  try {
    health = await api("GET", "/api/health");
  } catch (e) {
    return; // the feed's banner says when the lab is away
  }
  const banner = $("#health-banner");
  const degraded = health.status === "degraded";
  banner.hidden = !degraded;
  if (degraded) $("#health-text").textContent = health.reason || "";
}

check();
setInterval(check, POLL_MS);
