// Steward console: the one script. A page whose <main> carries data-live
// is re-read every two seconds while it is shown, and its <main> swapped
// for the new one, unless the user is typing in one of its fields. Pages
// work without it; it only saves pressing reload.
(function () {
  "use strict";
  var EVERY_MS = 2000;
  function live() {
    var m = document.querySelector("main");
    return m && m.hasAttribute("data-live");
  }
  function typing() {
    var a = document.activeElement;
    return a && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName) && a.type !== "hidden" && a.value !== "";
  }
  function tick() {
    if (!live()) return;
    if (document.hidden || typing()) { setTimeout(tick, EVERY_MS); return; }
    fetch(location.href, { credentials: "same-origin", redirect: "manual" })
      .then(function (r) {
        if (r.status !== 200) throw new Error("status " + r.status);
        return r.text();
      })
      .then(function (text) {
        var next = new DOMParser().parseFromString(text, "text/html").querySelector("main");
        if (next && !typing()) document.querySelector("main").replaceWith(next);
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, EVERY_MS); });
  }
  setTimeout(tick, EVERY_MS);
})();
