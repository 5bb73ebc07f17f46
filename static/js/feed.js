// The live feed: one WebSocket, a visible banner while the lab is away, reconnecting by itself.
//
// Messages (see app/web/live.py): "full" and "tick" carry the shared state (listeners, runs,
// totals, the lab's newest per-second point); "run.ended" says a run is over and stored;
// "conns" carries this browser's page of the connections table; "error" a view the server
// refused. The browser sends "view" messages.

import { $, relTime } from "./util.js";

const handlers = new Map();
let socket = null;
let backoff = 500;
let lastMessage = 0;
let everConnected = false;
let downSince = null;
let viewProvider = null;

// The server ticks a few times a second; this long without a message means the lab hangs or
// the path to it is broken, even if the socket still looks open.
const SILENCE_MS = 4000;

export const feed = {
  connected: false,
  bytes: 0,
  messages: 0,
  on(type, fn) {
    if (!handlers.has(type)) handlers.set(type, []);
    handlers.get(type).push(fn);
  },
  /** Send a message now if connected (views are re-sent on every reconnect anyway). */
  send(doc) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(doc));
      return true;
    }
    return false;
  },
  /** fn() returns the view to send after each (re)connect. */
  setViewProvider(fn) { viewProvider = fn; },
};

function emit(type, msg) {
  for (const fn of handlers.get(type) || []) {
    try { fn(msg); } catch (e) { console.error(e); }
  }
}

function setStatus(text, cls) {
  const pill = $("#status");
  pill.textContent = text;
  pill.className = `pill ${cls}`;
}

function showDown(reason) {
  if (downSince == null) downSince = Date.now() / 1000;
  $("#banner").hidden = false;
  $("#banner-text").textContent = `${reason} Reconnecting by itself (down since ${relTime(downSince)}).`;
  setStatus("offline", "bad");
  feed.connected = false;
  emit("down", {});
}

export function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws`);
  socket = ws;
  ws.onopen = () => {
    backoff = 500;
    everConnected = true;
    downSince = null;
    lastMessage = Date.now();
    feed.connected = true;
    $("#banner").hidden = true;
    setStatus("live", "ok");
    if (viewProvider) feed.send(viewProvider());
    emit("up", {});
  };
  ws.onmessage = (ev) => {
    lastMessage = Date.now();
    feed.bytes += ev.data.length;
    feed.messages += 1;
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    emit(msg.type === "full" ? "tick" : msg.type, msg);
    if (msg.type === "full") emit("full", msg);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    showDown(everConnected ? "The connection to the lab was lost." : "Cannot reach the lab.");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  };
}

setInterval(() => {
  if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastMessage > SILENCE_MS) {
    const stale = socket;
    socket = null;
    stale.onclose = null;
    stale.close();
    showDown("The lab stopped sending updates.");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  } else if (!feed.connected && downSince != null) {
    $("#banner-text").textContent = `Reconnecting by itself (down since ${relTime(downSince)}).`;
  }
}, 1000);
