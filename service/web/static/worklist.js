// Quiet self-refresh of the worklist: fetch only the list fragment, and only while the user is
// idle and nothing inside the list has focus or is open, so focus and scroll position never move.
(function () {
  "use strict";
  var region = document.getElementById("worklist-region");
  if (!region || !window.fetch) { return; }
  var url = region.getAttribute("data-refresh-url");
  var seconds = parseInt(region.getAttribute("data-refresh-seconds"), 10) || 60;
  var lastActivity = Date.now();
  ["keydown", "mousedown", "pointermove", "scroll", "touchstart", "input"].forEach(function (e) {
    document.addEventListener(e, function () { lastActivity = Date.now(); }, { passive: true });
  });
  function busy() {
    if (Date.now() - lastActivity < 15000) { return true; }
    if (region.contains(document.activeElement)) { return true; }
    if (region.querySelector("details[open]")) { return true; }
    return false;
  }
  function refresh(force) {
    if (!force && (document.hidden || busy())) { return; }
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null || (!force && busy())) { return; }
        var x = window.scrollX, y = window.scrollY;
        region.innerHTML = html;
        window.scrollTo(x, y);
      })
      .catch(function () { /* offline for a moment: the next round tries again */ });
  }
  window.setInterval(function () { refresh(false); }, seconds * 1000);
  // For tests and for a "refresh now" control: returns when the list has been replaced.
  window.triageRefreshWorklist = function () { return refresh(true); };
})();
