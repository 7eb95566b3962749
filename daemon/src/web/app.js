// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  // Local times for <time data-ms>.
  document.querySelectorAll("time[data-ms]").forEach(function (t) {
    var ms = Number(t.getAttribute("data-ms"));
    if (ms > 0) { t.title = t.textContent; t.textContent = new Date(ms).toLocaleString(); }
  });
  // Countdowns for [data-deadline] (Unix ms); the server's clock offset is taken into account.
  var skew = 0;
  var now = document.querySelector("[data-now]");
  if (now) { skew = Number(now.getAttribute("data-now")) - Date.now(); }
  function tick() {
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var left = Number(el.getAttribute("data-deadline")) - (Date.now() + skew);
      var a = Math.abs(left), h = Math.floor(a / 3600000), m = Math.floor(a / 60000) % 60, s = Math.floor(a / 1000) % 60;
      var text = (h ? h + ":" : "") + (m < 10 && h ? "0" : "") + m + ":" + (s < 10 ? "0" : "") + s;
      el.textContent = left < 0 ? "-" + text : text;
      el.classList.toggle("overdue", left < 0);
    });
  }
  tick(); setInterval(tick, 1000);
  // Auto-refresh for pages with <body data-refresh>, unless the user is typing.
  var main = document.querySelector("[data-refresh]");
  if (main) {
    setInterval(function () {
      var a = document.activeElement;
      if (a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT")) return;
      location.reload();
    }, Number(main.getAttribute("data-refresh")) * 1000);
  }
  // The image viewer has a script of its own, served by the gateway (`/assets/viewer.js`).
})();
