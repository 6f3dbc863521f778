// Opens many Socket.IO clients on /stream, subscribes them, and reports what arrives.
//
//   node clients.js '{"url": ..., "cookie": ..., "count": 500, "topic": "market.ticks",
//                     "transport": "websocket", "seconds": 10}'
//
// transport: "websocket", "polling", "upgrade" (long-polling first, then upgraded to
// WebSocket, as a browser's page connects; ready once upgraded), or "sse" (Server-Sent
// Events, Pulseboard only).  On long-polling each client keeps its HTTP connections
// alive between polls, as a browser does; "polling-close" opens a connection for
// every request instead (socket.io-client's default on Node.js).
//
// Prints {"ready": n} once every client is subscribed, then waits for a line on
// stdin (the start of the measured window), and SECONDS later prints one JSON
// line: events received in the window, a latency histogram in ms (receive time
// minus the event's producer timestamp) and error counts.  One process holds
// every client: socket.io-client on Node.js is cheap enough per message to
// leave the server the cores.
"use strict";
const readline = require("readline");
const { io } = require("socket.io-client");

const options = JSON.parse(process.argv[2]);
const { url, cookie = "", count, topic, transport = "websocket", seconds } = options;
const histogram = new Map(); // latency ms -> count
let measuring = false;
let received = 0;
let messages = 0;
let ready = 0;
let errors = 0;
let disconnects = 0;
const sockets = [];

function record(batch) {
  if (!measuring) return;
  const now = Date.now();
  messages += 1;
  for (const event of batch) {
    const ms = now - Date.parse(event.timestamp);
    histogram.set(ms, (histogram.get(ms) || 0) + 1);
  }
  received += batch.length;
}

function subscribed(ack) {
  if (!ack || !ack.ok) errors += 1;
  else ready += 1;
  if (ready + errors === count) process.stdout.write(JSON.stringify({ ready, errors }) + "\n");
}

// Server-Sent Events (transport "sse"): GET /api/v1/stream with the same cookie,
// one event per SSE message; ready once the stream's ": connected" comment arrives.
const http = require("http");
function openStream() {
  const target = new URL(`/api/v1/stream?topics=${encodeURIComponent(topic)}`, url);
  let counted = false;
  const request = http.get(
    target,
    { headers: { Cookie: cookie, Accept: "text/event-stream" }, agent: false },
    (response) => {
      if (response.statusCode !== 200) {
        errors += 1;
        pending -= 1;
        response.resume();
        openMore();
        return;
      }
      response.setEncoding("utf8");
      let buffer = "";
      response.on("data", (chunk) => {
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!counted && message.startsWith(": connected")) {
            counted = true;
            pending -= 1;
            subscribed({ ok: true });
            openMore();
            continue;
          }
          const data = message.split("\n").find((line) => line.startsWith("data: "));
          if (data && message.includes("event: event")) record([JSON.parse(data.slice(6))]);
        }
      });
      response.on("end", () => {
        if (measuring) disconnects += 1;
      });
    },
  );
  request.on("error", () => {
    if (!counted) {
      errors += 1;
      pending -= 1;
      openMore();
    } else if (measuring) disconnects += 1;
  });
  sockets.push({ close: () => request.destroy() });
}

// At most WINDOW handshakes in flight, so a large count does not overflow the
// server's accept queue.
const WINDOW = 100;
const TRANSPORTS = {
  websocket: ["websocket"],
  polling: ["polling"],
  upgrade: ["polling", "websocket"],
  "polling-close": ["polling"],
};
let opened = 0;
let pending = 0;
function keptAlive() {
  // A poll and a send can be in flight at once: two connections a client.
  return new http.Agent({ keepAlive: true, maxSockets: 2 });
}
function openMore() {
  while (pending < WINDOW && opened < count) {
    opened += 1;
    pending += 1;
    if (transport === "sse") {
      openStream();
      continue;
    }
    const socket = io(url + "/stream", {
      transports: TRANSPORTS[transport],
      extraHeaders: { Cookie: cookie, Origin: options.origin || url },
      reconnection: false,
      forceNew: true,
      // A poll and a send can be in flight at once: two kept-alive connections.
      agent: transport === "polling" || transport === "upgrade" ? keptAlive() : false,
      timeout: 60000,
    });
    socket.on("connect", () => {
      socket.emit("subscribe", { topics: [topic] }, (ack) => {
        const done = (answer) => {
          pending -= 1;
          subscribed(answer);
          openMore();
        };
        const engine = socket.io.engine;
        if (transport !== "upgrade" || engine.transport.name === "websocket") return done(ack);
        engine.once("upgrade", () => done(ack));
        engine.once("upgradeError", () => done(null));
      });
    });
    socket.on("connect_error", () => {
      errors += 1;
      pending -= 1;
      openMore();
    });
    socket.on("disconnect", (reason) => {
      if (reason !== "io client disconnect") disconnects += 1;
    });
    socket.on("events", record);
    sockets.push(socket);
  }
}
openMore();

const input = readline.createInterface({ input: process.stdin });
input.once("line", () => {
  measuring = true;
  const started = Date.now();
  setTimeout(() => {
    measuring = false;
    const elapsed = (Date.now() - started) / 1000;
    for (const socket of sockets) socket.close();
    const report = {
      received,
      messages,
      seconds: elapsed,
      errors,
      disconnects,
      histogram: Object.fromEntries(histogram),
    };
    // Exit only once the line is flushed: a pipe write is asynchronous.
    process.stdout.write(JSON.stringify(report) + "\n", () => process.exit(0));
  }, seconds * 1000);
});
