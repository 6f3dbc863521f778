/* Dashboard widgets: each fills from the event log (GET /api/v1/events) when the
   page opens, then continues live from exactly where its history ended (the
   answer's `newest` becomes the subscription's `since`): no gap and no repeat at
   the join.  Kinds: number (last, rate, min/max over a window), chart (uPlot,
   time axis, unit, range), table (latest value per key), log (latest events).

   Honest liveness: each widget says when it last changed; when the connection
   is down the widgets are dimmed and say so, and a banner says when events could
   not be recovered; each widget that may lack values is marked. */
(function () {
  "use strict";

  const stream = window.Pulseboard && window.Pulseboard.stream;
  const grid = document.getElementById("dashboard-widgets");
  if (!stream || !grid) return;

  const HISTORY_PAGE = 1000; // the endpoint's largest page
  const CHART_PAGES = 5; // at most this many pages of points per chart at load
  const LOG_ROWS = 50;
  const TABLE_ROWS = 100;
  const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

  function element(tag, className, content) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  /* payload["load"][0] from "load.0"; undefined when the path leads nowhere. */
  function pick(payload, path) {
    let value = payload;
    for (const part of path.split(".")) {
      if (value === null || typeof value !== "object") return undefined;
      value = value[Array.isArray(value) ? Number(part) : part];
    }
    return value;
  }

  function numeric(value) {
    const n = typeof value === "number" ? value : Number.parseFloat(value);
    return Number.isFinite(n) ? n : null;
  }

  function seconds(event) {
    return new Date(event.timestamp).getTime() / 1000;
  }

  function timeCell(iso) {
    const node = element("time", null, stream.formatTime(iso));
    node.dateTime = iso;
    node.title = stream.formatUtc(iso);
    return node;
  }

  function ago(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
  }

  async function history(config, params) {
    const query = new URLSearchParams({ topics: config.topic, ...params });
    if (config.types.length) query.set("types", config.types.join(","));
    if (config.keys.length) query.set("keys", config.keys.join(","));
    const response = await fetch(`/api/v1/events?${query}`, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `history: HTTP ${response.status}`);
    return body;
  }

  /* ---------- Widget kinds: each has load() (history) and add(events, live) ---------- */

  function numberWidget(config, body) {
    const value = body.querySelector(".widget-value");
    let points = []; // [seconds, value] within the window (min/max), arrivals (rate)
    let last = null;
    const windowed = config.mode !== "last";

    function show() {
      const since = Date.now() / 1000 - config.window;
      points = points.filter(([t]) => t >= since);
      let figure = null;
      if (config.mode === "last") figure = last;
      else if (config.mode === "rate") figure = points.length / (config.window / 60);
      else if (points.length) {
        const values = points.map(([, v]) => v);
        figure = config.mode === "min" ? Math.min(...values) : Math.max(...values);
      }
      value.textContent = figure === null ? "—" : number.format(figure);
    }
    setInterval(show, windowed ? 1000 : 60000);

    return {
      params() {
        if (!windowed) return { order: "desc", limit: "1" };
        const since = new Date(Date.now() - config.window * 1000).toISOString();
        return { order: "desc", limit: String(HISTORY_PAGE), since };
      },
      pages: windowed ? CHART_PAGES : 1,
      add(events) {
        for (const event of events) {
          const v = config.mode === "rate" ? 1 : numeric(pick(event.payload, config.path));
          if (v === null) continue;
          last = v;
          points.push([seconds(event), v]);
        }
        show();
      },
    };
  }

  function chartWidget(config, body) {
    const holder = body.querySelector(".widget-chart");
    const xs = [];
    const ys = [];
    const style = getComputedStyle(document.documentElement);
    const ink = style.getPropertyValue("--bs-secondary-color").trim() || "#6c757d";
    const rule = style.getPropertyValue("--bs-border-color").trim() || "#dee2e6";
    const line = style.getPropertyValue("--bs-primary").trim() || "#4f46e5";
    const axis = { stroke: ink, grid: { stroke: rule, width: 1 }, ticks: { stroke: rule } };
    const plot = new window.uPlot(
      {
        width: Math.max(240, holder.clientWidth),
        height: 220,
        legend: { show: false },
        cursor: { y: false },
        scales: {
          x: {
            time: true,
            range: () => {
              const now = Date.now() / 1000;
              return [now - config.range, now];
            },
          },
        },
        axes: [
          {
            ...axis,
            // The page's one clock (zone, 24-hour), not uPlot's own local format.
            values: (u, splits) =>
              splits.map((t) => window.Pulseboard.clock.format(new Date(t * 1000).toISOString(), "minutes")),
          },
          {
            ...axis,
            label: config.unit || config.path,
            size: 60,
            values: (u, values) => values.map((v) => number.format(v)),
          },
        ],
        series: [{}, { label: config.path, stroke: line, width: 2, spanGaps: false }],
      },
      [xs, ys],
      holder,
    );
    new ResizeObserver(() => plot.setSize({ width: Math.max(240, holder.clientWidth), height: 220 })).observe(holder);
    function draw() {
      plot.setData([xs, ys], true);
      holder.dataset.points = String(xs.length);
    }
    // Redrawn each second, so the time axis moves on even when no value comes.
    setInterval(() => {
      const since = Date.now() / 1000 - config.range;
      let drop = 0;
      while (drop < xs.length && xs[drop] < since) drop += 1;
      xs.splice(0, drop);
      ys.splice(0, drop);
      draw();
    }, 1000);

    return {
      params() {
        const since = new Date(Date.now() - config.range * 1000).toISOString();
        return { order: "desc", limit: String(HISTORY_PAGE), since };
      },
      pages: CHART_PAGES,
      add(events) {
        const before = xs.length;
        for (const event of events) {
          const v = numeric(pick(event.payload, config.path));
          if (v === null) continue;
          const t = seconds(event);
          // Events come in seq order; a time that steps back is kept in order anyway.
          let at = xs.length;
          while (at > 0 && xs[at - 1] > t) at -= 1;
          xs.splice(at, 0, t);
          ys.splice(at, 0, v);
        }
        if (xs.length !== before) draw();
      },
    };
  }

  function tableWidget(config, body) {
    const rows = body.querySelector(".widget-rows");
    const byKey = new Map();

    return {
      params() {
        return { order: "desc", limit: String(HISTORY_PAGE) };
      },
      pages: 1,
      add(events) {
        for (const event of events) {
          const key = String(event.key ?? "—").slice(0, 64);
          const v = pick(event.payload, config.path);
          if (v === undefined) continue;
          let row = byKey.get(key);
          if (!row) {
            if (byKey.size >= TABLE_ROWS) continue;
            row = element("tr");
            row.dataset.key = key;
            row.append(
              element("th", "text-truncate widget-key", key),
              element("td", "numeric widget-cell-value"),
              element("td", "numeric widget-cell-time"),
            );
            row.firstChild.scope = "row";
            const next = [...byKey.keys()].sort().find((other) => other > key);
            rows.insertBefore(row, next ? byKey.get(next) : null);
            byKey.set(key, row);
          }
          const n = numeric(v);
          row.children[1].textContent = n === null ? String(v).slice(0, 64) : number.format(n);
          row.children[2].replaceChildren(timeCell(event.timestamp));
        }
      },
    };
  }

  function logWidget(config, body) {
    const list = body.querySelector(".widget-log");

    return {
      params() {
        return { order: "desc", limit: String(LOG_ROWS) };
      },
      pages: 1,
      add(events) {
        for (const event of events) {
          const item = element("li", "widget-log-item");
          const summary = config.path ? pick(event.payload, config.path) : undefined;
          const text =
            summary === undefined ? JSON.stringify(event.payload) : typeof summary === "object" ? JSON.stringify(summary) : String(summary);
          item.append(timeCell(event.timestamp), element("span", "badge text-bg-light ms-2", event.type), element("span", "ms-2 text-break", text.slice(0, 300)));
          list.prepend(item);
        }
        while (list.children.length > LOG_ROWS) list.lastElementChild.remove();
      },
    };
  }

  const KINDS = { number: numberWidget, chart: chartWidget, table: tableWidget, log: logWidget };

  /* ---------- One widget: history, then live, with its own liveness ---------- */

  const widgets = [];

  function setStatus(widget, label, tone) {
    widget.status.textContent = label;
    widget.status.className = `badge rounded-pill widget-status ${tone}`;
  }

  async function start(section) {
    const config = JSON.parse(section.dataset.widget);
    if (section.dataset.denied) return;
    const widget = {
      section,
      config,
      status: section.querySelector(".widget-status"),
      footer: section.querySelector(".widget-updated"),
      lastSeq: 0,
      updated: null,
      ready: false,
    };
    widget.kind = KINDS[config.kind](config, section.querySelector(".widget-body"));
    widgets.push(widget);

    function take(events) {
      const fresh = events.filter((event) => event.seq > widget.lastSeq);
      if (!fresh.length) return;
      widget.lastSeq = fresh[fresh.length - 1].seq;
      widget.updated = Date.now();
      widget.kind.add(fresh);
      showUpdated(widget);
    }

    let newest = 0;
    try {
      // Pages newest first; applied oldest first, as they happened.
      const pages = [];
      let params = widget.kind.params();
      for (let n = 0; n < widget.kind.pages; n += 1) {
        const page = await history(config, params);
        if (n === 0) newest = page.newest || 0;
        pages.push(...page.events);
        if (!page.more || !page.cursor) break;
        params = { ...params, ...page.cursor };
      }
      pages.sort((a, b) => a.seq - b.seq);
      take(pages);
      widget.lastSeq = Math.max(widget.lastSeq, newest);
      if (pages.length) widget.updated = new Date(pages[pages.length - 1].timestamp).getTime();
    } catch (error) {
      // Live from here on, but what came before is missing: say so until reload.
      markWidget(widget, `History unavailable (${error.message || error})`);
    }
    widget.ready = true;
    stream.subscribe({
      topics: [config.topic],
      types: config.types.length ? config.types : null,
      keys: config.keys.length ? config.keys : null,
      since: { [config.topic]: newest },
      onEvents: take,
    });
    showState(widget);
    showUpdated(widget);
  }

  function showUpdated(widget) {
    const parts = widget.updated
      ? [document.createTextNode(`Updated ${ago(widget.updated)} · `), timeCell(new Date(widget.updated).toISOString())]
      : [document.createTextNode("No events yet")];
    if (widget.missing) parts.unshift(element("span", "fw-semibold text-warning-emphasis", `${widget.missing} · `));
    widget.footer.replaceChildren(...parts);
  }

  /* A widget that may lack values (its history would not load, or events of its
     topic are gone from the log) says so in its footer until the page is reloaded. */
  function markWidget(widget, note) {
    if (widget.missing) return;
    widget.missing = note;
    widget.section.classList.add("widget-gap");
    showUpdated(widget);
  }

  /* Events lost for good: the banner says so and marks the widgets of their topic.
     A gap found on subscribing names no one topic, so all the socket holds count. */
  function showGap(gap) {
    document.getElementById("dashboard-gap").classList.remove("d-none");
    const topics = gap.topic ? [gap.topic] : gap.subscribed || [];
    widgets.filter((widget) => topics.includes(widget.config.topic)).forEach((widget) => markWidget(widget, "Events missing"));
  }

  function showState(widget) {
    if (!widget.ready) return;
    const live = stream.state === "connected";
    widget.section.classList.toggle("widget-stale", !live);
    if (live) setStatus(widget, "Live", "bg-success-subtle text-success-emphasis");
    else setStatus(widget, stream.state === "connecting" ? "Connecting…" : "Offline", "bg-secondary-subtle text-secondary-emphasis");
  }

  stream.bindStateBadge(document.getElementById("dashboard-conn"));
  stream.on("state", () => widgets.forEach(showState));
  stream.on("gap", showGap);
  setInterval(() => widgets.forEach(showUpdated), 5000);

  const start_all = () => grid.querySelectorAll("[data-widget]").forEach(start);
  if (window.uPlot) start_all();
  else window.addEventListener("load", start_all);
})();
