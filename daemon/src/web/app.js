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
  // Ticking a study fills the patient's empty fields from its header.
  document.querySelectorAll("input[data-patient-id]").forEach(function (box) {
    box.addEventListener("change", function () {
      if (!box.checked || !box.form) return;
      [["patient_id", "data-patient-id"], ["patient_name", "data-patient-name"], ["sex", "data-sex"], ["birth_date", "data-birth-date"]].forEach(function (pair) {
        var field = box.form.querySelector("[name=" + pair[0] + "]");
        var value = box.getAttribute(pair[1]) || "";
        if (field && !field.value && value) { field.value = value; }
      });
    });
  });
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
  // The image viewer has a script of its own, served by the gateway (`/assets/viewer.js`).
})();
