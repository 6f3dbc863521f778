/* Notices as toasts on every signed-in page.

   Subscribes to the broadcast topic and the user's own topic.  The server sends
   a `notice` message for each live notice on any subscribed topic; replayed
   ones (after a reconnect) arrive only as `events`, so both are read and
   deduplicated by id.  Each shown notice is also announced on `document` as a
   "pulseboard:notice" event, for lists such as the dashboard's.

   When the stream reports a gap (events retention pruned before this page could
   have them), every page says so once, in a toast of its own. */
(function () {
  "use strict";

  const stream = window.Pulseboard && window.Pulseboard.stream;
  const container = document.getElementById("notice-toasts");
  if (!stream || !container) return;

  // level -> {label, icon}: the server's one table (stream/notice_levels.py), so a
  // toast names a level as the notices list and the admin form do.
  const LEVELS = JSON.parse(container.dataset.levels);
  const TOAST_DELAY_MS = 8000;
  // Enough toasts on screen; older ones are still on the notices page.
  const MAX_TOASTS = 4;
  const SEEN_LIMIT = 500;
  const seen = new Set();

  function levelOf(value) {
    return Object.prototype.hasOwnProperty.call(LEVELS, value) ? value : "info";
  }

  function text(value, limit) {
    const string = typeof value === "string" ? value : "";
    return string.length > limit ? `${string.slice(0, limit - 1)}…` : string;
  }

  function element(tag, className, content) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  /* The level as the notices page shows it: a badge with its icon and name. */
  function levelBadge(level) {
    const badge = element("span", `badge text-bg-${level} notice-level`);
    const icon = element("i", `bi bi-${LEVELS[level].icon} me-1`);
    icon.setAttribute("aria-hidden", "true");
    badge.append(icon, LEVELS[level].label);
    return badge;
  }

  function show(notice, announce = true) {
    if (!notice.id || seen.has(notice.id)) return;
    seen.add(notice.id);
    if (seen.size > SEEN_LIMIT) seen.delete(seen.values().next().value);

    const level = levelOf(notice.level);
    const toast = element("div", `toast notice-toast notice-${level}`);
    // The container is a log, read out as toasts arrive; an alert interrupts.
    if (level === "danger") toast.setAttribute("role", "alert");
    toast.setAttribute("aria-atomic", "true");
    toast.dataset.noticeId = notice.id;

    const header = element("div", "toast-header");
    const badge = levelBadge(level);
    badge.classList.add("me-2");
    const title = element("strong", "me-auto text-truncate", text(notice.title, 120) || LEVELS[level].label);
    const time = element("small", "text-body-secondary ms-2", stream.formatTime(notice.created_at));
    const close = element("button", "btn-close");
    close.type = "button";
    close.setAttribute("data-bs-dismiss", "toast");
    close.setAttribute("aria-label", "Close");
    header.append(badge, title, time, close);
    toast.append(header);
    if (notice.body) toast.append(element("div", "toast-body", text(notice.body, 600)));

    container.prepend(toast);
    while (container.children.length > MAX_TOASTS) container.lastElementChild.remove();
    toast.addEventListener("hidden.bs.toast", () => toast.remove());
    if (window.bootstrap && window.bootstrap.Toast) {
      window.bootstrap.Toast.getOrCreateInstance(toast, { delay: TOAST_DELAY_MS }).show();
    } else {
      toast.classList.add("show");
    }
    if (announce) {
      document.dispatchEvent(new CustomEvent("pulseboard:notice", { detail: { ...notice, level } }));
    }
  }

  stream.on("gap", () =>
    show(
      {
        id: "stream-gap",
        level: "warning",
        title: "Some events were missed",
        body: "This page was away longer than the event log keeps events; the oldest are gone.",
        created_at: new Date().toISOString(),
      },
      false,
    ),
  );

  stream.on("notice", show);
  stream.subscribe({
    topics: ["notices", `user.${document.body.dataset.userId}`],
    types: ["notice"],
    onEvents(events) {
      for (const event of events) {
        const payload = event.payload || {};
        show({
          id: event.id,
          level: payload.level,
          title: payload.title,
          body: payload.body,
          created_at: event.timestamp,
        });
      }
    },
  });
})();
