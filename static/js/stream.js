/* One Socket.IO connection to /stream per page, shared by every script on it.

   Page scripts call Pulseboard.stream.subscribe({topics, types, keys, onEvents})
   and get a handle they can update() or close().  A script that has read a
   topic's history up to seq S (GET /api/v1/events answers `newest`) passes
   `since: {topic: S}` and gets every event after S once: no gap, no repeat.  The server keeps one filter
   per topic per socket, so this module merges what all handles ask for into
   one subscription per topic (the union of their types/keys), sends only the
   difference, and hands each handle just the events its own filter accepts.

   After a dropped connection it re-subscribes with each topic's own position
   (the highest seq seen on it; the highest seen on any topic for one that has
   had none yet), so the server replays what each missed, however much, page
   after page; replayed and live events are deduplicated per topic by seq. */
(function () {
  "use strict";

  const body = document.body;
  const Pulseboard = (window.Pulseboard = window.Pulseboard || {});
  Pulseboard.stream = null;
  // Anonymous pages never connect: the server would refuse them anyway.
  if (!body.dataset.userId || typeof window.io !== "function") {
    return;
  }

  // The server allows ~10 client messages a second; UI changes are coalesced.
  const SYNC_DELAY_MS = 300;
  const RETRY_DELAY_MS = 1500;
  const ACK_TIMEOUT_MS = 10000;
  // Reconnects back off from 1 s to 10 s, each wait drawn at random within half of
  // it either way: when an instance restarts, its clients come back spread out.
  const RECONNECT_DELAY_MS = 1000;
  const RECONNECT_DELAY_MAX_MS = 10000;
  const RECONNECT_JITTER = 0.5;
  // A tab back in view or a network back up asks the server this fast whether the
  // connection still works, instead of waiting for the next ping to find out.
  const CHECK_TIMEOUT_MS = 3000;
  // The server's own limit on types/keys per subscribe; past it, filter here.
  const MAX_FILTER_ITEMS = 64;
  // The filter key of a topic held with no type or key filter (see wantedFilters).
  const UNFILTERED = JSON.stringify([null, null]);

  const forcePolling =
    new URLSearchParams(window.location.search).get("transport") === "polling" ||
    body.dataset.transports === "polling";

  const handles = new Set();
  const listeners = new Map(); // name -> Set of callbacks
  const seqByTopic = new Map(); // topic -> highest seq delivered (dedupe)
  const startsAt = new Set(); // topics whose position a script gave, none delivered since
  let sent = new Map(); // topic -> filter last asked of the server on this connection
  let catchUps = []; // {handle, topic, after}: history a late script still needs
  const filling = new Map(); // topic -> {holes, waiting}: holes being filled from the log
  let held = new Map(); // topic -> filter key the server holds for this connection
  let generation = 0; // bumped on every connect: stale acks are ignored
  let syncTimer = null;
  let syncing = false;
  let syncAgain = false;
  let everConnected = false;

  const stream = {
    state: "connecting",
    transport: null,
    lastSeq: 0,
    subscribed: [], // topics the server confirmed holding for this socket
    socket: null,
    subscribe,
    on,
  };

  const socket = window.io("/stream", {
    path: "/socket.io",
    // Long-polling first, then the upgrade to WebSocket where the network allows it:
    // behind a proxy that refuses, drops or buffers the upgrade the page stays on
    // polling and still gets its events (socket.io-client tries only the first
    // transport of a list when that one fails to open).
    transports: forcePolling ? ["polling"] : ["polling", "websocket"],
    reconnectionDelay: RECONNECT_DELAY_MS,
    reconnectionDelayMax: RECONNECT_DELAY_MAX_MS,
    randomizationFactor: RECONNECT_JITTER,
    // Called on every (re)connect, so the handshake carries where we left off.
    auth: (send) => send(stream.lastSeq > 0 ? { since: stream.lastSeq } : {}),
  });
  stream.socket = socket;
  Pulseboard.stream = stream;

  function on(name, callback) {
    if (!listeners.has(name)) listeners.set(name, new Set());
    listeners.get(name).add(callback);
    return () => listeners.get(name).delete(callback);
  }

  function fire(name, ...args) {
    for (const callback of listeners.get(name) || []) {
      try {
        callback(...args);
      } catch (error) {
        console.error(`Pulseboard.stream: a "${name}" listener failed`, error);
      }
    }
  }

  function setState(state) {
    if (stream.state === state) return;
    stream.state = state;
    fire("state", state);
  }

  function setTransport(name) {
    if (stream.transport === name) return;
    stream.transport = name;
    fire("transport", name);
  }

  /* ---------- Subscriptions ---------- */

  function cleanList(list) {
    if (!Array.isArray(list) || list.length === 0) return null;
    return [...new Set(list.filter((item) => typeof item === "string" && item))].sort();
  }

  function subscribe(options) {
    const handle = {
      topics: [],
      types: null,
      keys: null,
      onEvents: options.onEvents || null,
      update(next) {
        if ("topics" in next) handle.topics = cleanList(next.topics) || [];
        if ("types" in next) handle.types = cleanList(next.types);
        if ("keys" in next) handle.keys = cleanList(next.keys);
        scheduleSync(SYNC_DELAY_MS);
      },
      close() {
        handles.delete(handle);
        scheduleSync(SYNC_DELAY_MS);
      },
      accepts(event) {
        return (
          handle.topics.includes(event.topic) &&
          (handle.types === null || handle.types.includes(event.type)) &&
          (handle.keys === null || handle.keys.includes(event.key))
        );
      },
    };
    handle.topics = cleanList(options.topics) || [];
    handle.types = cleanList(options.types);
    handle.keys = cleanList(options.keys);
    handles.add(handle);
    for (const [topic, seq] of Object.entries(options.since || {})) {
      if (!handle.topics.includes(topic) || typeof seq !== "number") continue;
      const current = seqByTopic.get(topic);
      const asked = sent.get(topic);
      if (!asked && (current === undefined || (startsAt.has(topic) && seq < current))) {
        // Not asked of the server yet: the subscription starts right after the lowest
        // position any script gave, and each script drops what it already has.
        seqByTopic.set(topic, seq);
        startsAt.add(topic);
      } else if (current === undefined || seq < current || (asked && !covers(asked, handle))) {
        // The server already streams this topic, from a later point or through a
        // narrower filter (whose events may still be on their way: the server will not
        // send again what it sent, and events the old filter skipped are not ours by
        // then): once it holds this script's filter too, the difference comes from the
        // log, and what arrives meanwhile waits so the script gets it in order.
        handle.waiting = handle.waiting || [];
        catchUps.push({ handle, topic, after: seq });
      }
    }
    // Scripts on one page register together as it loads: one round of messages.
    scheduleSync(0);
    return handle;
  }

  /* Whether a filter ({types, keys}, null meaning any) passes all a handle asks for. */
  function covers(filter, handle) {
    const within = (outer, inner) =>
      outer === null || (inner !== null && inner.every((item) => outer.includes(item)));
    return within(filter.types, handle.types) && within(filter.keys, handle.keys);
  }

  function union(a, b) {
    if (a === null || b === null) return null;
    const merged = [...new Set([...a, ...b])].sort();
    return merged.length > MAX_FILTER_ITEMS ? null : merged;
  }

  /* topic -> {types, keys, key}: what the server should hold for this page. */
  function wantedFilters() {
    const wanted = new Map();
    for (const handle of handles) {
      for (const topic of handle.topics) {
        const current = wanted.get(topic);
        wanted.set(
          topic,
          current
            ? { types: union(current.types, handle.types), keys: union(current.keys, handle.keys) }
            : { types: handle.types, keys: handle.keys },
        );
      }
    }
    for (const filter of wanted.values()) {
      filter.key = JSON.stringify([filter.types, filter.keys]);
    }
    return wanted;
  }

  function scheduleSync(delay) {
    clearTimeout(syncTimer);
    syncTimer = setTimeout(syncSubscriptions, delay);
  }

  function call(name, data) {
    return socket.timeout(ACK_TIMEOUT_MS).emitWithAck(name, data);
  }

  /* Send the difference between what the page wants and what the server holds.
     One sync at a time: the server may handle concurrent messages out of order. */
  async function syncSubscriptions() {
    if (!socket.connected) return;
    if (syncing) {
      syncAgain = true;
      return;
    }
    syncing = true;
    const round = generation;
    try {
      const wanted = wantedFilters();
      const dropped = [...held.keys()].filter((topic) => !wanted.has(topic));
      if (dropped.length) {
        const ack = await call("unsubscribe", { topics: dropped });
        if (round !== generation) return;
        if (!ack || !ack.ok) throw new Error((ack && ack.error) || "unsubscribe failed");
        dropped.forEach((topic) => held.delete(topic));
        confirm(ack.subscribed);
      }
      for (const group of changedGroups(wanted)) {
        await subscribeGroup(group, round);
        if (round !== generation) return;
      }
      runCatchUps();
    } catch (error) {
      if (round === generation && socket.connected) {
        fire("error", String(error.message || error));
        syncAgain = true;
        scheduleSync(RETRY_DELAY_MS);
        return;
      }
    } finally {
      syncing = false;
      if (syncAgain) {
        syncAgain = false;
        scheduleSync(0);
      }
    }
  }

  /* Topics whose filter changed, grouped by filter: one subscribe per group. */
  function changedGroups(wanted) {
    const groups = new Map();
    for (const [topic, filter] of wanted) {
      if (held.get(topic) === filter.key) continue;
      if (!groups.has(filter.key)) groups.set(filter.key, { filter, topics: [] });
      groups.get(filter.key).topics.push(topic);
    }
    return groups.values();
  }

  async function subscribeGroup({ filter, topics }, round) {
    const request = { topics };
    if (filter.types) request.types = filter.types;
    if (filter.keys) request.keys = filter.keys;
    const since = positions(topics);
    if (Object.keys(since).length) request.since = since;
    topics.forEach((topic) => sent.set(topic, filter));
    let ack = await call("subscribe", request);
    if (ack && !ack.ok && /ahead of the log/.test(ack.error || "")) {
      // The event log was reset under us: start again from its present.
      delete request.since;
      stream.lastSeq = 0;
      seqByTopic.clear();
      ack = await call("subscribe", request);
    }
    if (round !== generation) return;
    if (!ack || !ack.ok) throw new Error((ack && ack.error) || "subscribe failed");
    // Denied topics count as held too, so they are not asked for again and again.
    topics.forEach((topic) => held.set(topic, filter.key));
    fire("ack", ack, request);
    confirm(ack.subscribed);
    if (ack.gap) fire("gap", ack);
  }

  /* Where each topic resumes: events on different topics arrive in separate
     messages, so one topic's highest seq says nothing about another's. */
  function positions(topics) {
    const since = {};
    for (const topic of topics) {
      if (seqByTopic.has(topic)) since[topic] = seqByTopic.get(topic);
      else if (stream.lastSeq > 0) since[topic] = stream.lastSeq;
    }
    return since;
  }

  function confirm(topics) {
    stream.subscribed = Array.isArray(topics) ? topics : [];
    fire("subscribed", stream.subscribed);
  }

  /* ---------- Incoming ---------- */

  socket.on("events", (batch) => {
    if (!Array.isArray(batch)) return;
    const fresh = [];
    for (const event of batch) {
      if (!event || typeof event.seq !== "number" || typeof event.topic !== "string") continue;
      const last = seqByTopic.get(event.topic) || 0;
      if (event.seq <= last) continue;
      // Each event names the one before it on its topic: one we never had is a hole.
      // (With a type or key filter the server, which sees the whole topic, checks.)
      if (last > 0 && typeof event.prev === "number" && event.prev > last) {
        if (held.get(event.topic) === UNFILTERED) fillHole(event.topic, last, event.seq);
      }
      seqByTopic.set(event.topic, event.seq);
      startsAt.delete(event.topic);
      if (event.seq > stream.lastSeq) stream.lastSeq = event.seq;
      // While a hole of its topic is filled, an event waits so scripts get it in order.
      if (filling.has(event.topic)) filling.get(event.topic).waiting.push(event);
      else fresh.push(event);
    }
    dispatch(fresh);
  });

  /* Ask the server for the events of a topic between two we have, from the log; hand
     them on, with the topic's events that came meanwhile, once every hole of the
     topic is filled: scripts get each event once, in seq order. */
  async function fillHole(topic, after, before) {
    if (!filling.has(topic)) filling.set(topic, { holes: 0, waiting: [] });
    const state = filling.get(topic);
    state.holes += 1;
    const found = await readLog(topic, after, before);
    state.waiting.push(...found);
    state.holes -= 1;
    if (state.holes > 0) return;
    filling.delete(topic);
    dispatch(inOrder(state.waiting));
  }

  /* A topic's events after one seq and before another, from the log, page after page.
     What the log no longer holds (or a refused request) is announced as a gap. */
  async function readLog(topic, after, before) {
    const found = [];
    let from = after;
    while (before > from + 1) {
      let ack;
      try {
        ack = await call("fill", { topic, after: from, before });
      } catch (error) {
        ack = null;
      }
      if (!ack || !ack.ok || ack.gap) fire("gap", { topic, after: from, before });
      const events = (ack && ack.ok && ack.events) || [];
      found.push(...events);
      if (!ack || !ack.more || !events.length) break;
      from = events[events.length - 1].seq;
    }
    return found;
  }

  /* Events in seq order, each once. */
  function inOrder(events) {
    const seen = new Set();
    return events
      .sort((a, b) => a.seq - b.seq)
      .filter((event) => {
        const id = `${event.topic} ${event.seq}`;
        return !seen.has(id) && seen.add(id);
      });
  }

  /* After a sync: the catch-ups whose topic the server now holds with the filter
     this page wants (so covering each late script's own). */
  function runCatchUps() {
    const wanted = wantedFilters();
    catchUps = catchUps.filter(({ handle }) => handles.has(handle));
    const ready = catchUps.filter(
      ({ topic }) => wanted.has(topic) && held.get(topic) === wanted.get(topic).key,
    );
    catchUps = catchUps.filter((entry) => !ready.includes(entry));
    for (const entry of ready) catchUp(entry);
  }

  /* A late script's events of a topic after its position, from the log, up to what
     the page has; then what arrived meanwhile, in seq order, each once. */
  async function catchUp({ handle, topic, after }) {
    const before = (seqByTopic.get(topic) || 0) + 1;
    const found = (await readLog(topic, after, before)).filter(handle.accepts);
    if (catchUps.some((entry) => entry.handle === handle)) {
      handle.waiting.push(...found); // another topic of it is still catching up
      return;
    }
    const ordered = inOrder([...found, ...handle.waiting]);
    handle.waiting = null;
    if (ordered.length && handle.onEvents && handles.has(handle)) handle.onEvents(ordered);
  }

  function dispatch(fresh) {
    if (!fresh.length) return;
    for (const handle of handles) {
      if (!handle.onEvents) continue;
      const mine = fresh.filter(handle.accepts);
      if (!mine.length) continue;
      if (handle.waiting) {
        handle.waiting.push(...mine);
        continue;
      }
      try {
        handle.onEvents(mine);
      } catch (error) {
        console.error("Pulseboard.stream: an events callback failed", error);
      }
    }
    fire("events", fresh);
  }

  socket.on("notice", (notice) => {
    if (notice && typeof notice === "object") fire("notice", notice);
  });

  /* ---------- Connection state ---------- */

  socket.on("connect", () => {
    generation += 1;
    held = new Map();
    sent = new Map();
    everConnected = true;
    setTransport(socket.io.engine.transport.name);
    setState("connected");
    scheduleSync(0);
  });

  // A new engine on every reconnect: follow its upgrade from polling to websocket.
  socket.io.on("open", () => {
    const engine = socket.io.engine;
    setTransport(engine.transport.name);
    engine.on("upgrade", (transport) => setTransport(transport.name));
  });

  socket.on("disconnect", (reason) => {
    generation += 1;
    stream.subscribed = [];
    // The server (sign-out, flooding) or this page ended it: no automatic retry.
    setState(socket.active ? "reconnecting" : "disconnected");
    fire("disconnect", reason);
  });

  // A refusal the server marks retryable (its database was too busy to answer) is
  // retried here, with the same backoff as a lost connection: socket.io-client retries
  // a failed handshake by itself, but never a refused connect.
  let refusedRetries = 0;
  socket.on("connect", () => {
    refusedRetries = 0;
  });

  socket.on("connect_error", (error) => {
    if (!socket.active && error && error.data && error.data.retry) {
      const base = Math.min(RECONNECT_DELAY_MS * 2 ** refusedRetries, RECONNECT_DELAY_MAX_MS);
      refusedRetries += 1;
      const wait = base * (1 - RECONNECT_JITTER + 2 * RECONNECT_JITTER * Math.random());
      setState(everConnected ? "reconnecting" : "connecting");
      setTimeout(() => {
        if (!socket.connected) socket.connect();
      }, wait);
      return;
    }
    // `active` is false when the server refused us (signed out): retrying is pointless.
    if (!socket.active) setState("disconnected");
    else setState(everConnected ? "reconnecting" : "connecting");
  });

  /* A tab back from the background, or a network that came back: reconnect or check
     the connection at once, and resync from each topic's position if it was lost. */
  async function checkNow() {
    if (!socket.connected) {
      // Waiting out a backoff: try now instead (the server refusing us ends it anyway).
      if (socket.active) {
        socket.disconnect();
        socket.connect();
      }
      return;
    }
    try {
      await socket.timeout(CHECK_TIMEOUT_MS).emitWithAck("unsubscribe", { topics: [] });
    } catch (error) {
      socket.disconnect();
      socket.connect(); // resubscribes with each topic's position on connect
    }
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") checkNow();
  });
  window.addEventListener("online", checkNow);

  /* ---------- Shared view helpers ---------- */

  const STATE_LOOK = {
    connecting: { label: "Connecting…", tone: "text-bg-secondary" },
    connected: { label: "Connected", tone: "text-bg-success" },
    reconnecting: { label: "Reconnecting…", tone: "text-bg-warning" },
    disconnected: { label: "Disconnected", tone: "text-bg-danger" },
  };

  /* Keep a status badge (holding a .live-dot) in step with the connection. */
  stream.bindStateBadge = function (badge) {
    if (!badge) return;
    const dot = badge.querySelector(".live-dot") || document.createElement("span");
    dot.className = "live-dot";
    dot.setAttribute("aria-hidden", "true");
    const label = document.createTextNode("");
    const show = (state) => {
      const look = STATE_LOOK[state] || STATE_LOOK.connecting;
      badge.classList.remove(...Object.values(STATE_LOOK).map((l) => l.tone));
      badge.classList.add(look.tone);
      dot.classList.toggle("live-dot-pulse", state === "connected");
      label.textContent = ` ${look.label}`;
      badge.dataset.state = state;
    };
    badge.replaceChildren(dot, label);
    show(stream.state);
    on("state", show);
  };

  /* "2026-12-01 14:03:07 UTC": the exact time, for a title to show on hover. */
  stream.formatUtc = (iso) => Pulseboard.clock.utc(iso);

  /* "14:03:07" from an envelope's ISO timestamp, in the user's time zone (clock.js). */
  stream.formatTime = (iso) => Pulseboard.clock.format(iso, "time");
})();
