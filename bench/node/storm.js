// Many Socket.IO clients that behave like the product's page (static/js/stream.js)
// through a server restart: the reconnect storm.
//
//   node storm.js '{"url": ..., "cookie": ..., "count": 2500, "topic": "market.ticks",
//                   "catchUp": true}'
//
// Each client starts on long-polling and upgrades to WebSocket, reconnects by
// itself with the page's backoff (1 s to 10 s, ±50 % jitter), and subscribes
// with its topic's position, so the server replays what it missed; an event
// whose `prev` it never had is a hole it asks the server to fill, as the page
// does.  Clients open at most WINDOW at a time on the first connect only; after
// that nothing paces them but their backoff.
//
// Prints {"ready": n, "errors": n} once every client is subscribed.  Then reads
// commands on stdin, one JSON object per line:
//   {"mark": true}           the restart begins now: times count from here
//   {"up": true}             the server listens again (connect errors before are the outage)
//   {"target": seq}          a client is caught up once it holds every event up
//                            to seq (with catchUp false: once it is subscribed again)
//   {"report": true}         print where every client stands, as one JSON line
//   {"quit": true}           close every client and exit
"use strict";
const readline = require("readline");
const { io } = require("socket.io-client");

const options = JSON.parse(process.argv[2]);
const { url, cookie = "", count, topic, catchUp = true } = options;
const WINDOW = 100;

let marked = 0; // ms timestamp of the restart, 0 before it
let up = false; // the server listens again: connect errors before this are the outage
let target = Infinity;
const counts = { refusals: 0, connectErrors: 0, timeouts: 0, serverErrors: 0, subscribeErrors: 0,
  duplicates: 0, subscribeBusy: 0, whileDown: 0, fills: 0, fillErrors: 0, outOfOrder: 0 };
const refusalStatus = new Map();
const clients = [];

function now() {
  return Date.now();
}

function classify(error) {
  // engine.io-client: a refused polling request carries its HTTP status in
  // `description`; a WebSocket that fails to open carries an event, a timeout
  // is "timeout".
  const status = typeof error.description === "number" ? error.description : 0;
  if (status === 429 || status === 503) {
    counts.refusals += 1;
    refusalStatus.set(status, (refusalStatus.get(status) || 0) + 1);
  } else if (status >= 500) counts.serverErrors += 1;
  else if (error.message === "timeout") counts.timeouts += 1;
  else if (marked && !up) counts.whileDown += 1;
  else counts.connectErrors += 1;
}

function makeClient(index) {
  const client = { index, last: 0, holes: 0, subscribed: false, connectedAt: 0,
    subscribedAt: 0, caughtUpAt: 0, transport: "" };
  const socket = io(url + "/stream", {
    transports: ["polling", "websocket"],
    extraHeaders: { Cookie: cookie, Origin: options.origin || url },
    reconnectionDelay: 1000,
    reconnectionDelayMax: 10000,
    randomizationFactor: 0.5,
    forceNew: true,
    auth: (send) => send(client.last > 0 ? { since: client.last } : {}),
  });
  client.socket = socket;

  function check() {
    if (!marked || client.caughtUpAt || !client.subscribed) return;
    const done = catchUp ? client.last >= target && client.holes === 0 : true;
    if (done && client.subscribedAt >= marked) client.caughtUpAt = now();
  }
  client.check = check;

  socket.on("connect", () => {
    client.subscribed = false;
    if (marked && !client.connectedAt) client.connectedAt = now();
    client.transport = socket.io.engine.transport.name;
    socket.io.engine.once("upgrade", (transport) => (client.transport = transport.name));
    subscribe();
  });
  function subscribe() {
    const request = { topics: [topic] };
    if (client.last > 0) request.since = { [topic]: client.last };
    socket.timeout(30000).emit("subscribe", request, (error, ack) => {
      if (error || !ack || !ack.ok) {
        if (!error && ack && ack.retry) counts.subscribeBusy += 1;
        else counts.subscribeErrors += 1;
        // As the page does: try again a little later while connected.
        setTimeout(() => socket.connected && subscribe(), 1500);
        return;
      }
      client.subscribed = true;
      if (marked && !client.subscribedAt) client.subscribedAt = now();
      if (client.onReady) client.onReady();
      check();
    });
  }
  let refusedRetries = 0;
  socket.on("connect_error", (error) => {
    // As the page does: a refusal marked retryable is retried with the same backoff.
    if (!socket.active && error.data && error.data.retry) {
      counts.refusals += 1;
      refusalStatus.set("busy", (refusalStatus.get("busy") || 0) + 1);
      const base = Math.min(1000 * 2 ** refusedRetries, 10000);
      refusedRetries += 1;
      setTimeout(() => socket.connected || socket.connect(), base * (0.5 + Math.random()));
      return;
    }
    classify(error);
  });
  socket.on("events", (batch) => receive(client, batch));
  return client;
}

function receive(client, batch) {
  if (!Array.isArray(batch)) return;
  for (const event of batch) {
    if (event.seq <= client.last) {
      counts.duplicates += 1;
      continue;
    }
    if (catchUp && client.last > 0 && typeof event.prev === "number" && event.prev > client.last) {
      fill(client, client.last, event.seq);
    }
    client.last = event.seq;
  }
  client.check();
}

function fill(client, after, before) {
  client.holes += 1;
  counts.fills += 1;
  client.socket.timeout(30000).emit("fill", { topic, after, before }, (error, ack) => {
    if (error || !ack || !ack.ok) {
      counts.fillErrors += 1; // the hole stays: this client is never caught up
      return;
    }
    const events = ack.events || [];
    if (ack.more && events.length) fill(client, events[events.length - 1].seq, before);
    client.holes -= 1;
    client.check();
  });
}

// The first connect, paced: at most WINDOW handshakes in flight.
let opened = 0;
let pending = 0;
let ready = 0;
function openMore() {
  while (pending < WINDOW && opened < count) {
    pending += 1;
    const client = makeClient(opened);
    opened += 1;
    clients.push(client);
    client.onReady = () => {
      client.onReady = null;
      pending -= 1;
      ready += 1;
      if (ready === count) process.stdout.write(JSON.stringify({ ready, errors: 0 }) + "\n");
      openMore();
    };
  }
}
openMore();

function percentile(values, fraction) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))];
}

function report() {
  const since = (field) => clients.filter((c) => c[field]).map((c) => c[field] - marked);
  const connected = since("connectedAt");
  const subscribed = since("subscribedAt");
  const caughtUp = since("caughtUpAt");
  const transports = {};
  for (const c of clients) {
    const name = c.socket.connected ? c.transport : "none";
    transports[name] = (transports[name] || 0) + 1;
  }
  return {
    clients: clients.length,
    connected: connected.length,
    subscribed: subscribed.length,
    caughtUp: caughtUp.length,
    connectedMs: { p50: percentile(connected, 0.5), p99: percentile(connected, 0.99),
      max: connected.length ? Math.max(...connected) : null },
    caughtUpMs: { p50: percentile(caughtUp, 0.5), p99: percentile(caughtUp, 0.99),
      max: caughtUp.length ? Math.max(...caughtUp) : null },
    // clients subscribed again, per second of the storm
    subscribedBySecond: histogramBySecond(subscribed),
    transports,
    refusalStatus: Object.fromEntries(refusalStatus),
    lowestPosition: clients.reduce((low, c) => Math.min(low, c.last), Infinity),
    ...counts,
  };
}

function histogramBySecond(values) {
  const bins = [];
  for (const v of values) {
    const second = Math.floor(v / 1000);
    while (bins.length <= second) bins.push(0);
    bins[second] += 1;
  }
  return bins;
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.mark) {
    marked = now();
    for (const c of clients) {
      c.connectedAt = c.subscribedAt = c.caughtUpAt = 0;
    }
  }
  if (command.up) up = true;
  if (command.target !== undefined) {
    target = command.target;
    for (const c of clients) c.check();
  }
  if (command.report) process.stdout.write(JSON.stringify(report()) + "\n");
  if (command.quit) {
    for (const c of clients) c.socket.close();
    process.stdout.write(JSON.stringify(report()) + "\n", () => process.exit(0));
  }
});
