// Pages for the soak: Socket.IO clients on /stream that do what static/js/stream.js does,
// counted one by one.
//
//   node soak.js '{"cookie": ..., "churn": 20,
//                  "pages": [{"url": ..., "transport": "websocket"|"polling",
//                             "topics": ["market.ticks", ...]}, ...]}'
//
// Each page reconnects by itself, subscribes again after every connect with each
// topic's own position (the highest seq seen on it, else the highest seen on any),
// and keeps each event once per topic by seq.  It also counts what a page would
// hide: an event received twice, one that arrives after a later one of its topic, and
// (when events carry `prev`, the seq before them on their topic) a hole seen on arrival.
// "churn" pages a minute leave (as a tab put to sleep) for AWAY_MS and come back.
//
// Commands, one JSON line each on stdin, each answered by one JSON line on stdout
// (the first line, {"ready", "errors"}, comes once every page has subscribed):
//   {"command": "status"}   totals so far
//   {"command": "settle"}   stop the churn; answered once every page is back and subscribed
//   {"command": "count", "expected": {topic: [seq, ...]}, "wait": seconds}
//       per page: expected, received, missing, duplicated, out of order; answered once
//       no page misses anything, or after "wait" seconds; then the pages close.
"use strict";
const readline = require("readline");
const { io } = require("socket.io-client");

const options = JSON.parse(process.argv[2]);
const ACK_TIMEOUT_MS = 10000; // as stream.js
const RETRY_DELAY_MS = 1500; // as stream.js
const AWAY_MS = [2000, 8000]; // how long a churned page stays away
const OPENING = 100; // handshakes in flight while the pages open
const OPEN_TIMEOUT_MS = 120000;

/* The seqs a page received on one topic, one bit each. */
class SeqSet {
  constructor() {
    this.bits = new Uint8Array(4096);
    this.size = 0;
  }
  has(seq) {
    const byte = seq >> 3;
    return byte < this.bits.length && (this.bits[byte] & (1 << (seq & 7))) !== 0;
  }
  add(seq) {
    const byte = seq >> 3;
    if (byte >= this.bits.length) {
      const grown = new Uint8Array(Math.max(byte + 1, this.bits.length * 2));
      grown.set(this.bits);
      this.bits = grown;
    }
    this.bits[byte] |= 1 << (seq & 7);
    this.size += 1;
  }
}

class Page {
  constructor(index, { url, transport, topics }) {
    this.index = index;
    this.url = url;
    this.transport = transport;
    this.topics = topics;
    this.seen = new Map(); // topic -> highest seq received
    this.received = new Map(topics.map((topic) => [topic, new SeqSet()]));
    this.lastSeq = 0;
    this.duplicated = 0;
    this.outOfOrder = 0;
    this.holes = 0; // events whose `prev` (where the server sends it) was never seen
    this.connects = 0;
    this.dropped = 0; // disconnects the page did not ask for
    this.churned = 0;
    this.subscribeErrors = 0;
    this.subscribed = false;
    this.away = false;
    this.generation = 0;
    this.socket = io(url + "/stream", {
      transports: [transport],
      extraHeaders: { Cookie: options.cookie, Origin: url },
      forceNew: true,
      reconnectionDelayMax: 5000,
      timeout: 60000,
      // As stream.js: the handshake carries where the page left off.
      auth: (send) => send(this.lastSeq > 0 ? { since: this.lastSeq } : {}),
    });
    this.socket.on("connect", () => this.onConnect());
    this.socket.on("disconnect", (reason) => this.onDisconnect(reason));
    this.socket.on("events", (batch) => this.onEvents(batch));
    // Refused by the server (not signed in, origin): socket.io-client gives up.
    this.socket.on("connect_error", () => this.socket.active || this.opened(false));
  }

  onConnect() {
    this.connects += 1;
    this.generation += 1;
    this.subscribe(this.generation);
  }

  onDisconnect(reason) {
    this.generation += 1;
    this.subscribed = false;
    if (reason !== "io client disconnect") {
      this.dropped += 1;
      disconnectReasons[reason] = (disconnectReasons[reason] || 0) + 1;
    }
  }

  /* Where each topic resumes: its own highest seq, else the highest seen on any. */
  request() {
    const request = { topics: this.topics };
    if (this.lastSeq > 0) {
      request.since = {};
      for (const topic of this.topics) request.since[topic] = this.seen.get(topic) || this.lastSeq;
    }
    return request;
  }

  async subscribe(round) {
    let ack;
    try {
      ack = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck("subscribe", this.request());
    } catch (error) {
      ack = { ok: false, error: String(error.message || error) };
    }
    if (round !== this.generation) return;
    if (ack && ack.ok) {
      this.subscribed = true;
      this.opened(true);
      return;
    }
    this.subscribeErrors += 1;
    subscribeErrors[ack && ack.error] = (subscribeErrors[ack && ack.error] || 0) + 1;
    this.opened(false);
    setTimeout(() => {
      if (round === this.generation && this.socket.connected) this.subscribe(round);
    }, RETRY_DELAY_MS);
  }

  /* The first subscribe's outcome (or the first refusal) counts once per page. */
  opened(ok) {
    if (this.counted) return;
    this.counted = true;
    pageReady(ok);
  }

  onEvents(batch) {
    if (!Array.isArray(batch)) return;
    for (const event of batch) {
      const { topic, seq, prev } = event;
      const received = this.received.get(topic);
      if (received === undefined) continue; // not a topic of this page
      const last = this.seen.get(topic) || 0;
      if (last && typeof prev === "number" && prev > last && seq > last) this.holes += 1;
      if (received.has(seq)) {
        this.duplicated += 1;
        continue;
      }
      if (seq < (this.seen.get(topic) || 0)) this.outOfOrder += 1;
      received.add(seq);
      if (seq > (this.seen.get(topic) || 0)) this.seen.set(topic, seq);
      if (seq > this.lastSeq) this.lastSeq = seq;
    }
  }

  leave() {
    this.away = true;
    this.churned += 1;
    this.socket.disconnect();
    const [shortest, longest] = AWAY_MS;
    this.returnTimer = setTimeout(() => this.comeBack(), shortest + Math.random() * (longest - shortest));
  }

  comeBack() {
    clearTimeout(this.returnTimer);
    this.away = false;
    this.socket.connect();
  }

  count(expected) {
    let wanted = 0;
    let got = 0;
    for (const topic of this.topics) {
      const received = this.received.get(topic);
      for (const seq of expected[topic] || []) {
        wanted += 1;
        if (received.has(seq)) got += 1;
      }
    }
    return {
      page: this.index,
      url: this.url,
      transport: this.transport,
      topics: this.topics,
      expected: wanted,
      received: got,
      missing: wanted - got,
      // Received but not in the log on this page's topics: must be 0 as well.
      unexpected: this.topics.reduce((n, t) => n + this.received.get(t).size, 0) - got,
      duplicated: this.duplicated,
      out_of_order: this.outOfOrder,
      holes: this.holes,
      connects: this.connects,
      dropped: this.dropped,
      churned: this.churned,
      subscribe_errors: this.subscribeErrors,
    };
  }
}

const disconnectReasons = {};
const subscribeErrors = {};
const pages = [];
let readyPages = 0;
let failedPages = 0;
let opening = 0;

function pageReady(ok) {
  if (ok) readyPages += 1;
  else failedPages += 1;
  opening -= 1;
  openMore();
  if (readyPages + failedPages === options.pages.length) {
    say({ ready: readyPages, errors: failedPages });
    startChurn();
  }
}

function openMore() {
  while (opening < OPENING && pages.length < options.pages.length) {
    opening += 1;
    pages.push(new Page(pages.length, options.pages[pages.length]));
  }
}

let churnTimer = null;
function startChurn() {
  if (!options.churn) return;
  churnTimer = setInterval(() => {
    const present = pages.filter((page) => !page.away && page.subscribed);
    if (present.length) present[Math.floor(Math.random() * present.length)].leave();
  }, 60000 / options.churn);
}

function totals() {
  const sum = (name) => pages.reduce((n, page) => n + page[name], 0);
  return {
    subscribed: pages.filter((page) => page.subscribed).length,
    away: pages.filter((page) => page.away).length,
    received: pages.reduce(
      (n, page) => n + page.topics.reduce((m, t) => m + page.received.get(t).size, 0),
      0,
    ),
    duplicated: sum("duplicated"),
    out_of_order: sum("outOfOrder"),
    holes: sum("holes"),
    churned: sum("churned"),
    dropped: sum("dropped"),
    subscribe_errors: sum("subscribeErrors"),
    disconnect_reasons: disconnectReasons,
    subscribe_error_messages: subscribeErrors,
  };
}

function settle() {
  clearInterval(churnTimer);
  for (const page of pages) if (page.away) page.comeBack();
  const check = setInterval(() => {
    if (pages.every((page) => page.subscribed)) {
      clearInterval(check);
      say(totals());
    }
  }, 200);
}

function count(expected, waitSeconds) {
  const deadline = Date.now() + waitSeconds * 1000;
  const check = setInterval(() => {
    const counts = pages.map((page) => page.count(expected));
    if (counts.every((c) => c.missing === 0) || Date.now() > deadline) {
      clearInterval(check);
      for (const page of pages) page.socket.close();
      // Exit only once the line is flushed: a pipe write is asynchronous.
      say({ pages: counts, totals: totals() }, () => process.exit(0));
    }
  }, 500);
}

function say(message, then) {
  process.stdout.write(JSON.stringify(message) + "\n", then);
}

// Pages that neither subscribed nor failed by then count as failed.
setTimeout(() => {
  if (readyPages + failedPages < options.pages.length) {
    say({ ready: readyPages, errors: options.pages.length - readyPages });
  }
}, OPEN_TIMEOUT_MS).unref();

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const message = JSON.parse(line);
  if (message.command === "status") say(totals());
  else if (message.command === "settle") settle();
  else if (message.command === "count") count(message.expected, message.wait);
});
openMore();
