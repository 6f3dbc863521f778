// The reference: a Node.js Socket.IO 4 server emitting each event in-process.
//
//   node reference.js PORT
//
// Serves the /stream protocol the benchmark clients speak (subscribe joins the
// topic's room and acknowledges), and on a stdin line {"rate": R, "seconds": S}
// emits R events a second for S seconds, each as its own message to the room,
// the way a plain Socket.IO application forwards a feed.  Prints {"listening"}
// once bound and {"emitted": n} after each run.
"use strict";
const http = require("http");
const readline = require("readline");
const { Server } = require("socket.io");

const port = Number(process.argv[2]);
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

let seq = 0;
function run(rate, seconds) {
  const started = Date.now();
  let sent = 0;
  const room = stream.to("topic:market.ticks");
  const timer = setInterval(() => {
    const elapsed = (Date.now() - started) / 1000;
    const due = Math.min(Math.floor(elapsed * rate), Math.floor(rate * seconds));
    while (sent < due) {
      seq += 1;
      sent += 1;
      room.emit("events", [{
        id: `ref-${seq}`,
        seq,
        topic: "market.ticks",
        type: "tick",
        key: "ACME",
        timestamp: new Date().toISOString(),
        payload: { n: sent, price: 100 + (sent % 50) / 10 },
      }]);
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
