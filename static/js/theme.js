/* Colour mode before first paint: loaded synchronously in <head>, so no flash.
   The server renders data-bs-theme from the stored choice; "auto" is only
   known in the browser, so it is resolved here and follows system changes. */
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.remove("no-js");
  root.classList.add("js");

  if (root.getAttribute("data-theme-pref") !== "auto" || !window.matchMedia) {
    return;
  }
  var dark = window.matchMedia("(prefers-color-scheme: dark)");
  function apply() {
    root.setAttribute("data-bs-theme", dark.matches ? "dark" : "light");
  }
  apply();
  if (dark.addEventListener) {
    dark.addEventListener("change", apply);
  } else if (dark.addListener) {
    dark.addListener(apply); // Safari < 14
  }
})();
