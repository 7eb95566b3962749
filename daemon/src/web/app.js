// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
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
  // Whether the user has changed any field of the page (typed, ticked, chosen), whether or
  // not it still has the focus.
  function edited() {
    var fields = document.querySelectorAll("input, textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.tagName === "SELECT") {
        for (var j = 0; j < f.options.length; j++) {
          if (f.options[j].selected !== f.options[j].defaultSelected) return true;
        }
      } else if (f.type === "checkbox" || f.type === "radio") {
        if (f.checked !== f.defaultChecked) return true;
      } else if (f.type !== "hidden" && f.type !== "submit" && f.type !== "button" && f.value !== f.defaultValue) {
        return true;
      }
    }
    return false;
  }
  // Auto-refresh for pages with [data-refresh], never while the user is in a field or has
  // changed one: a refresh must not take what they typed.
  var main = document.querySelector("[data-refresh]");
  if (main) {
    setInterval(function () {
      var a = document.activeElement;
      if (a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT")) return;
      if (edited()) return;
      location.reload();
    }, Number(main.getAttribute("data-refresh")) * 1000);
  }
  // A form with data-confirm="question" asks before it is sent: what it does is hard to undo.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { e.preventDefault(); e.stopImmediatePropagation(); }
    });
  });
  // Drafts: a form with data-draft="URL" is sent there a second after each change, and when
  // the page is left, so the server keeps what was typed (and fills the form with it again).
  document.querySelectorAll("form[data-draft]").forEach(function (form) {
    var url = form.getAttribute("data-draft"), timer = null;
    function fields() { return new URLSearchParams(new FormData(form)); }
    function save() {
      timer = null;
      fetch(url, { method: "POST", body: fields(), credentials: "same-origin" }).then(function (r) {
        if (r.ok) { form.setAttribute("data-saved", String(Date.now())); }
      }, function () {});
    }
    form.addEventListener("input", function () {
      form.removeAttribute("data-saved");
      if (timer) clearTimeout(timer);
      timer = setTimeout(save, 1000);
    });
    form.addEventListener("submit", function () { if (timer) { clearTimeout(timer); timer = null; } });
    window.addEventListener("pagehide", function () {
      if (timer) { clearTimeout(timer); timer = null; navigator.sendBeacon(url, fields()); }
    });
  });
  // The image viewer: drag for window/level, wheel for frames, ctrl+wheel to zoom.
  var viewer = document.getElementById("viewer");
  if (!viewer) return;
  var img = viewer.querySelector(".stage img");
  var overlay = viewer.querySelector(".overlay");
  if (!img) return;
  var base = img.getAttribute("data-base");
  var frames = Number(img.getAttribute("data-frames")) || 1;
  var frame = 0, zoom = 1;
  var wc = img.getAttribute("data-wc"), ww = img.getAttribute("data-ww");
  wc = wc === "" ? null : Number(wc); ww = ww === "" ? null : Number(ww);
  var pending = null;
  function src() {
    var q = (base.indexOf("?") < 0 ? "?" : "&") + "frame=" + frame;
    if (wc !== null && ww !== null) q += "&wc=" + Math.round(wc) + "&ww=" + Math.max(1, Math.round(ww));
    return base + q;
  }
  function show() {
    if (pending) clearTimeout(pending);
    pending = setTimeout(function () { img.src = src(); }, 60);
    overlay.textContent = (frame + 1) + "/" + frames + (wc !== null ? "  W " + Math.round(ww) + " L " + Math.round(wc) : "") + (zoom !== 1 ? "  " + zoom.toFixed(1) + "x" : "");
  }
  viewer.querySelectorAll("[data-preset]").forEach(function (b) {
    b.addEventListener("click", function (e) {
      e.preventDefault();
      var p = b.getAttribute("data-preset").split(",");
      if (p.length === 2) { wc = Number(p[0]); ww = Number(p[1]); } else { wc = null; ww = null; }
      show();
    });
  });
  var stage = viewer.querySelector(".stage");
  var drag = null;
  stage.addEventListener("mousedown", function (e) {
    e.preventDefault();
    if (wc === null) { wc = Number(img.getAttribute("data-wc-auto")) || 128; ww = Number(img.getAttribute("data-ww-auto")) || 256; }
    drag = { x: e.clientX, y: e.clientY, wc: wc, ww: ww };
  });
  window.addEventListener("mouseup", function () { drag = null; });
  window.addEventListener("mousemove", function (e) {
    if (!drag) return;
    var k = Math.max(1, drag.ww / 256);
    ww = Math.max(1, drag.ww + (e.clientX - drag.x) * k);
    wc = drag.wc + (e.clientY - drag.y) * k;
    show();
  });
  stage.addEventListener("wheel", function (e) {
    e.preventDefault();
    if (e.ctrlKey) {
      zoom = Math.min(8, Math.max(1, zoom * (e.deltaY < 0 ? 1.2 : 1 / 1.2)));
      img.style.transform = "scale(" + zoom + ")";
      show();
      return;
    }
    frame = Math.min(frames - 1, Math.max(0, frame + (e.deltaY > 0 ? 1 : -1)));
    show();
  }, { passive: false });
  document.addEventListener("keydown", function (e) {
    if (e.key === "ArrowDown" || e.key === "PageDown") { frame = Math.min(frames - 1, frame + 1); show(); }
    if (e.key === "ArrowUp" || e.key === "PageUp") { frame = Math.max(0, frame - 1); show(); }
  });
  show();
})();
