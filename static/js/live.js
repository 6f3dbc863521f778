/* The live-stream page: every event on the chosen topics, newest first.

   Topic toggles and the type filter change the subscription in place, and rows
   of a topic turned off go.  Rows are rendered once per animation frame and the
   list is bounded, so a busy stream keeps the page responsive; Pause keeps
   counting but holds rendering.  Each row opens to the event's full JSON, with
   a Copy button; Search hides the rows that do not contain the words typed. */
(function () {
  "use strict";

  const stream = window.Pulseboard && window.Pulseboard.stream;
  const list = document.getElementById("event-list");
  if (!stream || !list) return;

  // Rows kept on screen (and held while paused): older ones are dropped.
  const MAX_ROWS = 200;
  const PAYLOAD_CHARS = 240;
  const TYPE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

  const $ = (id) => document.getElementById(id);
  const form = $("stream-filters");
  const typeInput = $("type-filter");
  const pauseButton = $("pause-btn");
  const pausedCount = $("paused-count");
  const searchInput = $("search-filter");
  const ownTopic = `user.${document.body.dataset.userId}`;
  const emptyState = $("event-empty");
  // Rows live in their own box, after the empty state, so trimming is cheap.
  const rowsBox = document.createElement("div");
  rowsBox.className = "event-rows";
  list.append(rowsBox);
  const counters = {
    shown: $("event-count"),
    received: $("stat-received"),
    lastSeq: $("last-seq"),
    replayed: $("stat-replayed"),
    subscribed: $("stat-subscribed"),
  };

  let received = 0;
  let replayed = 0;
  let paused = false;
  let newWhilePaused = 0;
  let pending = []; // events waiting for the next frame (or for Resume), oldest first
  let frame = null;

  /* ---------- Filters ---------- */

  function checkedTopics() {
    return [...form.querySelectorAll("input[name=topics]:checked")].map((box) => box.value);
  }

  /* The types typed in the filter, or null for "every type"; undefined if invalid. */
  function typedTypes() {
    const types = typeInput.value.split(/[\s,]+/).filter(Boolean);
    if (!types.length) return null;
    return types.every((type) => TYPE.test(type)) && types.length <= 64 ? types : undefined;
  }

  function currentFilter() {
    const types = typedTypes();
    typeInput.classList.toggle("is-invalid", types === undefined);
    return { topics: checkedTopics(), types: types === undefined ? null : types };
  }

  // Filters from the URL (the form also works as a plain GET), then keep the URL in step.
  function applyUrlFilters() {
    const params = new URLSearchParams(window.location.search);
    const topics = params.getAll("topics");
    if (topics.length) {
      form.querySelectorAll("input[name=topics]").forEach((box) => {
        box.checked = topics.includes(box.value);
      });
    }
    if (params.has("type")) typeInput.value = params.get("type");
  }

  function rememberFiltersInUrl() {
    const params = new URLSearchParams(window.location.search);
    params.delete("topics");
    params.delete("type");
    checkedTopics().forEach((topic) => params.append("topics", topic));
    if (typeInput.value.trim()) params.set("type", typeInput.value.trim());
    const query = params.toString();
    window.history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
  }

  function filtersChanged() {
    const filter = currentFilter();
    if (typedTypes() === undefined) return; // keep the last valid subscription
    handle.update(filter);
    rememberFiltersInUrl();
    dropRowsOutside(filter);
  }

  /* Rows (and held events) of a topic or type no longer asked for go at once. */
  function dropRowsOutside(filter) {
    const wanted = (topic, type) =>
      filter.topics.includes(topic) && (filter.types === null || filter.types.includes(type));
    pending = pending.filter((event) => wanted(event.topic, event.type));
    for (const item of [...rowsBox.children]) {
      if (!wanted(item.dataset.topic, item.dataset.type)) item.remove();
    }
    showCounts();
  }

  /* ---------- Rows ---------- */

  function element(tag, className, content) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function topicTone(topic) {
    if (topic === "market.ticks") return "topic-market";
    if (topic === "system.metrics") return "topic-metrics";
    if (topic === "notices") return "topic-notices";
    if (topic.startsWith("user.")) return "topic-user";
    return "topic-other";
  }

  function topicLabel(topic) {
    return topic === ownTopic ? "My notifications" : topic;
  }

  function compact(payload) {
    let json;
    try {
      json = JSON.stringify(payload);
    } catch (error) {
      json = String(payload);
    }
    json = json === undefined ? "" : json;
    return json.length > PAYLOAD_CHARS ? `${json.slice(0, PAYLOAD_CHARS - 1)}…` : json;
  }

  /* A row that opens (a native <details>) to the whole event, pretty, with Copy. */
  function row(event) {
    const item = element("details", "event-item");
    item.dataset.seq = event.seq;
    item.dataset.topic = event.topic;
    item.dataset.type = event.type;
    const whole = JSON.stringify(event, null, 2);
    item.dataset.text = whole.toLowerCase();

    const summary = element("summary", "event-row");
    const time = element("time", "event-time", stream.formatTime(event.timestamp));
    time.dateTime = typeof event.timestamp === "string" ? event.timestamp : "";
    if (time.dateTime) time.title = stream.formatUtc(event.timestamp);
    const topic = element("span", `badge event-topic ${topicTone(event.topic)}`, topicLabel(event.topic));
    topic.title = event.topic;
    const type = element("span", "event-type", String(event.type));
    const key = element("span", "event-key", event.key == null ? "" : String(event.key));
    const payload = element("code", "event-payload", compact(event.payload));
    payload.title = `#${event.seq}`;
    summary.append(time, topic, type, key, payload);

    const detail = element("div", "event-detail");
    const copy = element("button", "btn btn-sm btn-outline-secondary event-copy", "Copy JSON");
    copy.type = "button";
    copy.addEventListener("click", () => copyText(whole, copy));
    detail.append(element("pre", "event-json", whole), copy);
    item.append(summary, detail);
    item.classList.toggle("d-none", !matchesSearch(item));
    return item;
  }

  async function copyText(text, button) {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch (error) {
      // No clipboard (a page not served over HTTPS): select the text to copy by hand.
      const pre = button.previousElementSibling;
      window.getSelection().selectAllChildren(pre);
      button.textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => {
      button.textContent = "Copy JSON";
    }, 2000);
  }

  /* ---------- Search (within what is shown) ---------- */

  function searchWords() {
    return searchInput.value.toLowerCase().split(/\s+/).filter(Boolean);
  }

  function matchesSearch(item) {
    return searchWords().every((word) => item.dataset.text.includes(word));
  }

  function applySearch() {
    for (const item of rowsBox.children) item.classList.toggle("d-none", !matchesSearch(item));
    showCounts();
  }

  function render() {
    frame = null;
    if (paused || !pending.length) return;
    const batch = pending;
    pending = [];
    const rows = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i -= 1) rows.append(row(batch[i]));
    rowsBox.prepend(rows);
    while (rowsBox.childElementCount > MAX_ROWS) rowsBox.lastElementChild.remove();
    showCounts();
  }

  function showCounts() {
    const shown = rowsBox.querySelectorAll(".event-item:not(.d-none)").length;
    counters.shown.textContent = shown;
    if (emptyState) emptyState.classList.toggle("d-none", rowsBox.childElementCount > 0);
    counters.received.textContent = received.toLocaleString();
    counters.lastSeq.textContent = stream.lastSeq ? String(stream.lastSeq) : "—";
    counters.replayed.textContent = replayed.toLocaleString();
    pausedCount.textContent = `${newWhilePaused.toLocaleString()} new`;
    pausedCount.classList.toggle("d-none", !paused || newWhilePaused === 0);
  }

  function take(events) {
    received += events.length;
    if (paused) newWhilePaused += events.length;
    pending.push(...events);
    if (pending.length > MAX_ROWS) pending = pending.slice(-MAX_ROWS);
    if (paused) {
      showCounts();
    } else if (frame === null) {
      frame = window.requestAnimationFrame(render);
    }
  }

  /* ---------- Controls ---------- */

  function setPaused(value) {
    paused = value;
    newWhilePaused = 0;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.classList.toggle("active", paused);
    pauseButton.querySelector(".bi").className = paused ? "bi bi-play-fill" : "bi bi-pause-fill";
    pauseButton.querySelector(".pause-label").textContent = paused ? "Resume" : "Pause";
    if (!paused) render();
    showCounts();
  }

  function clear() {
    pending = [];
    newWhilePaused = 0;
    rowsBox.replaceChildren();
    showCounts();
  }

  function showError(message) {
    const box = $("stream-error");
    if (!box) return;
    $("stream-error-text").textContent = message ? `The server refused a subscription: ${message}` : "";
    box.classList.toggle("d-none", !message);
  }

  applyUrlFilters();
  const handle = stream.subscribe({ ...currentFilter(), onEvents: take });

  let debounce = null;
  form.addEventListener("change", filtersChanged);
  typeInput.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(filtersChanged, 300);
  });
  // The form works without JavaScript (a GET reload); here it must not reload.
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(debounce);
    filtersChanged();
  });
  pauseButton.addEventListener("click", () => setPaused(!paused));
  searchInput.addEventListener("input", applySearch);
  $("clear-btn").addEventListener("click", clear);

  stream.bindStateBadge($("conn-state"));
  const transportBadge = $("transport");
  const showTransport = (name) => {
    transportBadge.textContent = `Transport: ${name || "none"}`;
    transportBadge.dataset.transport = name || "";
  };
  showTransport(stream.transport);
  stream.on("transport", showTransport);
  // Down, there is no transport: the badge says so rather than the last one used.
  stream.on("state", (state) => showTransport(state === "connected" ? stream.transport : null));

  stream.on("ack", (ack) => {
    replayed += ack.replayed || 0;
    showError("");
    showCounts();
  });
  // The socket also holds topics other scripts want (the toasts'): show this page's.
  stream.on("subscribed", (topics) => {
    const mine = (topics || []).filter((topic) => handle.topics.includes(topic));
    counters.subscribed.textContent = mine.length ? mine.join(", ") : "none";
  });
  stream.on("gap", () => $("stream-gap").classList.remove("d-none"));
  stream.on("error", showError);
})();
