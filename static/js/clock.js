/* One clock for every page: times in the user's chosen time zone (Settings →
   Preferences; the browser's own when none is chosen), 24-hour, with the exact
   UTC time on hover.  Server-rendered <time data-clock="…"> elements show UTC
   until this runs; page scripts format through Pulseboard.clock. */
(function () {
  "use strict";

  const Pulseboard = (window.Pulseboard = window.Pulseboard || {});
  const chosen = document.body.dataset.timeZone || undefined;

  function formatter(options) {
    try {
      return new Intl.DateTimeFormat(undefined, { ...options, hourCycle: "h23", timeZone: chosen });
    } catch (error) {
      // A zone this browser does not know: its own zone rather than nothing.
      return new Intl.DateTimeFormat(undefined, { ...options, hourCycle: "h23" });
    }
  }

  const STYLES = {
    time: formatter({ hour: "2-digit", minute: "2-digit", second: "2-digit" }),
    minutes: formatter({ hour: "2-digit", minute: "2-digit" }),
    datetime: formatter({
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      timeZoneName: "short",
    }),
    date: formatter({ year: "numeric", month: "short", day: "numeric" }),
  };

  function parse(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  const clock = {
    zone: STYLES.time.resolvedOptions().timeZone,
    /* "14:03:07" (time), "01/12/2026, 14:03 CET" (datetime) or "1 Dec 2026" (date). */
    format(iso, style = "time") {
      const date = parse(iso);
      return date ? (STYLES[style] || STYLES.time).format(date) : "—";
    },
    /* "2026-12-01 14:03:07 UTC", for a title. */
    utc(iso) {
      const date = parse(iso);
      return date ? `${date.toISOString().replace("T", " ").slice(0, 19)} UTC` : "";
    },
    localize(root = document) {
      for (const node of root.querySelectorAll("time[data-clock]")) {
        node.textContent = clock.format(node.dateTime, node.dataset.clock);
        node.title = clock.utc(node.dateTime);
      }
    },
  };
  Pulseboard.clock = clock;
  clock.localize();
})();
