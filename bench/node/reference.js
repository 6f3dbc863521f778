// The reference: a Node.js Socket.IO 4 server emitting each event in-process.
//
//   node reference.js PORT [ROUND_MS]
//
// Serves the /stream protocol the benchmark clients speak (subscribe joins the
// topic's room and acknowledges), and on a stdin line {"rate": R, "seconds": S}
// emits R events a second for S seconds.  Without ROUND_MS each event is its
// own message to the room, the way a plain Socket.IO application forwards a
// feed.  With ROUND_MS ("node-batched") the room's events are batched on a
// timer, as Pulseboard's rounds batch them: an event for an idle room goes out
// at once; one that comes while the room rests (ROUND_MS after its last
// message) waits and joins the next message, one array for the whole round,
// encoded once for the room.  Prints {"listening"} once bound and
// {"emitted": n} after each run.
"use strict";
const http = require("http");
const readline = require("readline");
const { Server } = require("socket.io");

const port = Number(process.argv[2]);
const roundMs = Number(process.argv[3] || 0);
const server = http.createServer((req, res) => {
  res.writeHead(req.url === "/healthz" ? 200 : 404);
  res.end();
});
const io = new Server(server, { cors: { origin: true }, perMessageDeflate: false });
const stream = io.of("/stream");

stream.on("connection", (socket) => {
  socket.on("subscribe", (data, ack) => {
    const topics = (data && data.topics) || [];
    for (const topic of topics) socket.join("topic:" + topic);
    if (typeof ack === "function") ack({ ok: true, subscribed: topics, denied: [] });
  });
});

// Per room: the events waiting for the room's next round, and whether it rests.
const rounds = new Map();
function deliver(roomName, event) {
  if (!roundMs) {
    stream.to(roomName).emit("events", [event]);
    return;
  }
  let round = rounds.get(roomName);
  if (!round) {
    round = { waiting: [], resting: false };
    rounds.set(roomName, round);
  }
  round.waiting.push(event);
  if (!round.resting) flush(roomName, round);
}
function flush(roomName, round) {
  if (round.waiting.length === 0) {
    round.resting = false;
    return;
  }
  stream.to(roomName).emit("events", round.waiting);
  round.waiting = [];
  round.resting = true;
  setTimeout(() => flush(roomName, round), roundMs);
}

let seq = 0;
function run(rate, seconds) {
  const started = Date.now();
  let sent = 0;
  const timer = setInterval(() => {
    const elapsed = (Date.now() - started) / 1000;
    const due = Math.min(Math.floor(elapsed * rate), Math.floor(rate * seconds));
    while (sent < due) {
      seq += 1;
      sent += 1;
      deliver("topic:market.ticks", {
        id: `ref-${seq}`,
        seq,
        topic: "market.ticks",
        type: "tick",
        key: "ACME",
        timestamp: new Date().toISOString(),
        payload: { n: sent, price: 100 + (sent % 50) / 10 },
      });
    }
    if (elapsed >= seconds) {
      clearInterval(timer);
      process.stdout.write(JSON.stringify({ emitted: sent }) + "\n");
    }
  }, 2);
}

server.listen(port, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ listening: port }) + "\n");
});
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const { rate, seconds } = JSON.parse(line);
  run(rate, seconds);
});
