/* The top navigation (UI_LAYOUT=topnav) stays on one line: the items that do not
   fit move, from the last one back, into its "More" menu, which holds a copy of
   each (templates/_topnav.html).  Measured again whenever the room for the list
   changes; below the collapse breakpoint every item is in the hamburger menu. */
(function () {
  "use strict";

  const list = document.getElementById("topnav-links");
  if (!list) return;
  const more = list.querySelector(".topnav-more");
  const moreToggle = more.querySelector("[data-bs-toggle]");
  const toggler = document.querySelector(".app-topbar .navbar-toggler");
  const items = [...list.children].filter((item) => item !== more);
  const copies = (item) => more.querySelectorAll(`[data-nav-key="${item.dataset.navKey}"]`);

  function collapsed() {
    return toggler !== null && getComputedStyle(toggler).display !== "none";
  }

  /* The first `count` items stay in the bar, the rest show in "More". */
  function keep(count) {
    items.forEach((item, index) => {
      const inBar = index < count;
      item.hidden = !inBar;
      for (const copy of copies(item)) copy.hidden = inBar;
    });
    more.hidden = count === items.length;
    moreToggle.classList.toggle("active", more.querySelector("li:not([hidden]) .active") !== null);
  }

  function fits() {
    const shown = [...list.children].filter((item) => !item.hidden);
    const last = shown[shown.length - 1];
    // Half a pixel for sub-pixel rounding.
    return !last || last.getBoundingClientRect().right <= list.getBoundingClientRect().right + 0.5;
  }

  function arrange() {
    keep(items.length);
    if (collapsed()) return;
    let count = items.length;
    while (count > 0 && !fits()) keep(--count);
  }

  arrange();
  // The list takes the room the brand and the actions leave, so its own size is
  // the signal; icons drawn from a web font change widths once the font is in.
  new ResizeObserver(arrange).observe(list);
  if (document.fonts) document.fonts.ready.then(arrange);
})();
