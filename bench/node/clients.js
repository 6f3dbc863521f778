// Opens N Socket.IO clients on /stream, subscribes them, and reports what arrives.
//
//   node clients.js URL COOKIE COUNT TOPIC TRANSPORT SECONDS
//
// Prints one JSON line when all clients are subscribed ({"ready": n}), then,
// after SECONDS, one JSON line with every client's latencies in ms
// (receive time minus the event's producer timestamp) and error counts.
"use strict";
const { io } = require("socket.io-client");

const [url, cookie, countText, topic, transport, secondsText] = process.argv.slice(2);
const count = Number(countText);
const seconds = Number(secondsText);
const latencies = [];
let received = 0;
let ready = 0;
let errors = 0;
const sockets = [];

function subscribe(socket) {
  socket.emit("subscribe", { topics: [topic] }, (ack) => {
    if (!ack || !ack.ok) { errors += 1; return; }
    ready += 1;
    if (ready === count) process.stdout.write(JSON.stringify({ ready }) + "\n");
  });
}

for (let i = 0; i < count; i += 1) {
  const socket = io(url + "/stream", {
    transports: transport === "polling" ? ["polling"] : ["websocket"],
    extraHeaders: { Cookie: cookie, Origin: url },
    reconnection: false,
    forceNew: true,
  });
  socket.on("connect", () => subscribe(socket));
  socket.on("connect_error", () => { errors += 1; });
  socket.on("events", (batch) => {
    const now = Date.now();
    for (const event of batch) {
      latencies.push(now - Date.parse(event.timestamp));
      received += 1;
    }
  });
  sockets.push(socket);
}

setTimeout(() => {
  for (const socket of sockets) socket.close();
  // Exit only once the (large) line is flushed: a pipe write is asynchronous.
  process.stdout.write(JSON.stringify({ received, errors, latencies }) + "\n", () => process.exit(0));
}, seconds * 1000);
