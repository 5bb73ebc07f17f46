// The shared live state, filled from the feed's "full" and "tick" messages before any
// section's own handler runs (this module registers first: every section imports it).
import { feed } from "./feed.js";

export const state = {
  listeners: [],
  runs: [],
  total: 0,
  t: 0,
  interval: 0.25,
  section: "overview",
};

const sections = new Map();

/** Register a section: {show(arg), hide()} called when the tab becomes (in)visible. */
export function registerSection(name, hooks) {
  sections.set(name, hooks);
}

// A comparison's place in a section's address: #runs/compare/<id>,<id> (saved runs),
// #fire/compare/<id> (transports compared).
export const COMPARE_ROUTE = "compare/";

export function sectionHooks(name) {
  return sections.get(name);
}

feed.on("tick", (msg) => {
  state.listeners = msg.listeners || [];
  state.runs = msg.runs || [];
  state.total = msg.total ?? 0;
  state.t = msg.t || Date.now() / 1000;
  if (msg.interval) state.interval = msg.interval;
});
