/* Dashboard widgets fed by the stream: price ticker, host metrics with a small
   chart, event counters and the latest notices. */
(function () {
  "use strict";

  const stream = window.Pulseboard && window.Pulseboard.stream;
  const $ = (id) => document.getElementById(id);
  if (!stream || !$("ticker-rows")) return;

  const MAX_SYMBOLS = 50; // rows in the ticker; later symbols are counted, not shown
  const CHART_SAMPLES = 60; // host samples drawn (two minutes at the demo's 2 s)
  const MAX_NOTICES = 8;
  const RATE_WINDOW_MS = 60000;

  function element(tag, className, content) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function finite(value) {
    const number = typeof value === "number" ? value : Number.parseFloat(value);
    return Number.isFinite(number) ? number : null;
  }

  function markLive(badgeId) {
    const badge = $(badgeId);
    if (!badge || badge.dataset.live) return;
    badge.dataset.live = "1";
    badge.className = "badge rounded-pill bg-success-subtle text-success-emphasis";
    badge.textContent = "Live";
  }

  /* ---------- Counters ---------- */

  let received = 0;
  let arrivals = []; // [time, count] per batch within the last minute

  function countEvents(events) {
    received += events.length;
    arrivals.push([Date.now(), events.length]);
    $("stat-events").textContent = received.toLocaleString();
    $("stat-last-seq").textContent = `#${stream.lastSeq}`;
    showRate();
  }

  function showRate() {
    const since = Date.now() - RATE_WINDOW_MS;
    arrivals = arrivals.filter(([time]) => time >= since);
    const rate = arrivals.reduce((sum, [, count]) => sum + count, 0);
    $("stat-rate").textContent = rate.toLocaleString();
  }

  /* ---------- Ticker ---------- */

  const tickerRows = $("ticker-rows");
  const rowsBySymbol = new Map();
  const symbols = new Set();

  function tickerRow(symbol) {
    let row = rowsBySymbol.get(symbol);
    if (row || rowsBySymbol.size >= MAX_SYMBOLS) return row;
    row = element("tr", "ticker-row");
    row.dataset.symbol = symbol;
    row.append(
      element("th", "ticker-symbol", symbol),
      element("td", "numeric ticker-price"),
      element("td", "numeric ticker-change"),
      element("td", "numeric ticker-time"),
    );
    row.firstChild.scope = "row";
    // Alphabetical, so rows do not jump around as prices move.
    const next = [...rowsBySymbol.keys()].sort().find((other) => other > symbol);
    tickerRows.insertBefore(row, next ? rowsBySymbol.get(next) : null);
    rowsBySymbol.set(symbol, row);
    const empty = $("ticker-empty");
    if (empty) empty.remove();
    return row;
  }

  function flash(cell, direction) {
    cell.classList.remove("flash-up", "flash-down");
    void cell.offsetWidth; // restart the animation
    cell.classList.add(direction > 0 ? "flash-up" : "flash-down");
  }

  function showTick(event) {
    const tick = event.payload || {};
    const symbol = String(tick.symbol || event.key || "").slice(0, 24);
    const price = finite(tick.price);
    if (!symbol || price === null) return;
    symbols.add(symbol);
    const row = tickerRow(symbol);
    if (!row) return;
    const [, priceCell, changeCell, timeCell] = row.children;
    const previous = finite(priceCell.dataset.price);
    priceCell.dataset.price = price;
    priceCell.textContent = price.toLocaleString(undefined, {
      minimumFractionDigits: 2,
      maximumFractionDigits: 4,
    });
    if (previous !== null && previous !== price) flash(priceCell, price - previous);

    const change = finite(tick.change_pct);
    changeCell.replaceChildren();
    if (change !== null) {
      const up = change >= 0;
      const arrow = element("i", `bi ${up ? "bi-caret-up-fill" : "bi-caret-down-fill"} me-1`);
      arrow.setAttribute("aria-hidden", "true");
      changeCell.append(arrow, `${up ? "+" : ""}${change.toFixed(2)}%`);
      changeCell.classList.toggle("text-success", up);
      changeCell.classList.toggle("text-danger", !up);
    }
    timeCell.textContent = stream.formatTime(event.timestamp);
  }

  /* ---------- Host metrics ---------- */

  const samples = []; // {cpu, mem} percentages, oldest first
  let loadScale = 4;

  function showMetric(name, text, percent) {
    $(`metric-${name}-value`).textContent = text;
    const bar = $(`metric-${name}-bar`);
    const clamped = Math.max(0, Math.min(100, percent));
    bar.style.width = `${clamped}%`; // CSSOM, allowed by style-src 'self'
    bar.classList.toggle("bg-warning", clamped >= 75 && clamped < 90);
    bar.classList.toggle("bg-danger", clamped >= 90);
    bar.parentElement.setAttribute("aria-valuenow", String(Math.round(clamped)));
  }

  function showHost(event) {
    const host = event.payload || {};
    const cpu = finite(host.cpu_pct);
    const memPct = finite(host.mem_pct);
    const used = finite(host.mem_used_mb);
    const total = finite(host.mem_total_mb);
    const load = Array.isArray(host.load) ? host.load.map(finite) : [];
    if (cpu !== null) showMetric("cpu", `${cpu.toFixed(1)}%`, cpu);
    if (memPct !== null) {
      const detail = used !== null && total !== null ? ` · ${gigabytes(used)} / ${gigabytes(total)} GB` : "";
      showMetric("memory", `${memPct.toFixed(1)}%${detail}`, memPct);
    }
    if (load[0] != null) {
      // No core count in the payload: scale to the busiest load seen, at least 4.
      loadScale = Math.max(loadScale, Math.ceil(Math.max(...load.filter((v) => v !== null))));
      const text = load.filter((v) => v !== null).map((v) => v.toFixed(2)).join(" · ");
      showMetric("load", text, (load[0] / loadScale) * 100);
    }
    if (cpu !== null || memPct !== null) {
      samples.push({ cpu, mem: memPct });
      if (samples.length > CHART_SAMPLES) samples.shift();
      chart.draw();
    }
  }

  function gigabytes(megabytes) {
    return (megabytes / 1024).toFixed(1);
  }

  /* A canvas line chart of CPU and memory, in the page's colours. */
  const chart = (function () {
    const holder = $("metrics-chart");
    let canvas = null;

    function setUp() {
      canvas = element("canvas", "metrics-canvas");
      canvas.setAttribute("aria-hidden", "true");
      const legend = element("div", "chart-legend");
      for (const [name, tone] of [
        ["CPU", "legend-cpu"],
        ["Memory", "legend-mem"],
      ]) {
        const item = element("span", `legend-item ${tone}`);
        item.append(element("span", "legend-swatch"), name);
        legend.append(item);
      }
      holder.replaceChildren(canvas, legend);
      holder.classList.add("has-chart");
      new ResizeObserver(draw).observe(canvas);
      new MutationObserver(draw).observe(document.documentElement, {
        attributes: true,
        attributeFilter: ["data-bs-theme"],
      });
    }

    function line(context, values, width, height, color) {
      context.strokeStyle = color;
      context.lineWidth = 2;
      context.lineJoin = "round";
      context.beginPath();
      let started = false;
      values.forEach((value, index) => {
        if (value === null) return;
        const x = (index / (CHART_SAMPLES - 1)) * width;
        const y = height - (Math.max(0, Math.min(100, value)) / 100) * (height - 4) - 2;
        if (started) context.lineTo(x, y);
        else context.moveTo(x, y);
        started = true;
      });
      context.stroke();
    }

    function draw() {
      if (!samples.length) return;
      if (!canvas) setUp();
      const ratio = window.devicePixelRatio || 1;
      const width = canvas.clientWidth;
      const height = canvas.clientHeight;
      if (!width || !height) return;
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      const context = canvas.getContext("2d");
      context.setTransform(ratio, 0, 0, ratio, 0, 0);
      context.clearRect(0, 0, width, height);
      const colours = getComputedStyle(holder);
      // Newest sample at the right edge.
      const offset = CHART_SAMPLES - samples.length;
      const padded = (key) => [...Array(offset).fill(null), ...samples.map((s) => s[key])];
      line(context, padded("cpu"), width, height, colours.getPropertyValue("--pb-chart-cpu").trim());
      line(context, padded("mem"), width, height, colours.getPropertyValue("--pb-chart-mem").trim());
      holder.setAttribute(
        "aria-label",
        `Host metrics chart: CPU ${formatPct(samples.at(-1).cpu)}, memory ${formatPct(samples.at(-1).mem)}`,
      );
    }

    return { draw };
  })();

  function formatPct(value) {
    return value === null ? "unknown" : `${value.toFixed(1)}%`;
  }

  /* ---------- Notices ---------- */

  const LEVEL_LABELS = { info: "Info", success: "Success", warning: "Warning", danger: "Alert" };

  function showNotice(notice) {
    const holder = $("notice-list");
    let list = holder.querySelector(".notice-feed");
    if (!list) {
      list = element("ul", "list-group list-group-flush notice-feed");
      holder.replaceChildren(list);
    }
    const item = element("li", "list-group-item notice-item");
    item.dataset.noticeId = notice.id;
    const badge = element("span", `badge text-bg-${notice.level} mt-1`, LEVEL_LABELS[notice.level]);
    const text = element("div", "flex-grow-1 min-w-0");
    text.append(element("div", "fw-semibold text-truncate", String(notice.title || "")));
    if (notice.body) text.append(element("div", "small text-body-secondary notice-body", String(notice.body).slice(0, 300)));
    item.append(badge, text, element("time", "activity-time", stream.formatTime(notice.created_at)));
    list.prepend(item);
    while (list.childElementCount > MAX_NOTICES) list.lastElementChild.remove();
  }

  /* ---------- Wiring ---------- */

  stream.bindStateBadge($("dashboard-conn"));
  stream.on("events", countEvents);
  document.addEventListener("pulseboard:notice", (event) => showNotice(event.detail));
  stream.subscribe({
    topics: ["market.ticks", "system.metrics"],
    types: ["tick", "host"],
    onEvents(events) {
      for (const event of events) {
        if (event.topic === "market.ticks") {
          showTick(event);
          markLive("ticker-badge");
        } else {
          showHost(event);
          markLive("metrics-badge");
        }
      }
      $("stat-symbols").textContent = symbols.size.toLocaleString();
    },
  });
  window.setInterval(showRate, 5000);
})();
