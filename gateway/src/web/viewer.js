// The viewer's viewport: scrolling a series' slices and frames (wheel, arrow keys, PageUp and
// PageDown, Home and End, the slider, a finger), window/level (presets, left-drag), zoom and
// pan (Ctrl+wheel, buttons, right-drag, two fingers), full screen; for an ECG, gain and speed.
// Frames are swapped in place, never by loading the page; neighbours are fetched ahead into a
// small cache. Without this script the page still shows the series' first frame or the ECG.
(function () {
  "use strict";
  var vp = document.getElementById("viewport");
  if (!vp) return;
  vp.querySelectorAll("[data-needs-js]").forEach(function (el) { el.hidden = false; });
  var caseId = vp.getAttribute("data-case");
  var stack = [];
  try { stack = JSON.parse(vp.getAttribute("data-stack") || "[]"); } catch (e) { stack = []; }
  // One slice per frame of every instance, in order.
  var slices = [];
  stack.forEach(function (s) {
    for (var f = 0; f < Math.max(1, s.f || 1); f++) slices.push({ n: s.n, o: s.o, f: f, p: s.p });
  });
  if (!slices.length) return;
  var index = Math.min(slices.length - 1, Math.max(0, Number(vp.getAttribute("data-start")) || 0));
  var slider = document.getElementById("slice");

  function toggleFullscreen() {
    if (document.fullscreenElement) { document.exitFullscreen().catch(function () {}); }
    else if (vp.requestFullscreen) { vp.requestFullscreen().catch(function () {}); }
  }
  var full = document.getElementById("fullscreen");
  if (full) full.addEventListener("click", toggleFullscreen);

  function typing(t) {
    return t && t !== slider && /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName);
  }

  if (vp.getAttribute("data-kind") === "waveform") { ecg(); return; }

  var stage = document.getElementById("stage");
  var img = document.getElementById("image");
  if (!stage || !img) return;
  var sliceNo = document.getElementById("slice-no");
  var slicePos = document.getElementById("slice-pos");
  var wlText = document.getElementById("wl");
  var zoomText = document.getElementById("zoom");
  var posLabel = vp.getAttribute("data-position") || "";
  var wc = null, ww = null, zoom = 1, panX = 0, panY = 0, step = 1;

  function url(i) {
    var s = slices[i];
    var u = "/cases/" + caseId + "/images/" + s.n + "?o=" + encodeURIComponent(s.o) + "&frame=" + s.f;
    if (wc !== null && ww !== null) u += "&wc=" + Math.round(wc) + "&ww=" + Math.max(1, Math.round(ww));
    return u;
  }

  // Frames fetched ahead, least recently used first out.
  var cache = new Map(), CACHE = 24;
  function fetchAhead(u) {
    var im = cache.get(u);
    if (im) { cache.delete(u); cache.set(u, im); return im; }
    im = new Image();
    im.addEventListener("error", function () { cache.delete(u); });
    im.src = u;
    cache.set(u, im);
    while (cache.size > CACHE) cache.delete(cache.keys().next().value);
    return im;
  }
  function prefetch() {
    [step, 2 * step, 3 * step, -step].forEach(function (d) {
      var j = index + d;
      if (j >= 0 && j < slices.length) fetchAhead(url(j));
    });
  }
  img.addEventListener("load", prefetch);

  var pending = null;
  // Shows the current slice at the current window; a window being dragged waits a moment.
  function show(later) {
    var u = url(index);
    if (pending) { clearTimeout(pending); pending = null; }
    if (later) { pending = setTimeout(function () { img.src = u; }, 60); }
    else if (img.getAttribute("src") !== u) { img.src = u; }
    img.setAttribute("data-index", index);
    img.setAttribute("data-wc", wc === null ? "" : Math.round(wc));
    img.setAttribute("data-ww", ww === null ? "" : Math.max(1, Math.round(ww)));
    sliceNo.textContent = (index + 1) + "/" + slices.length;
    var p = slices[index].p;
    slicePos.textContent = typeof p === "number" ? posLabel + " " + p.toFixed(1) + " mm" : "";
    wlText.textContent = wc !== null ? "W " + Math.round(ww) + " L " + Math.round(wc) : "";
    zoomText.textContent = zoom !== 1 ? zoom.toFixed(1) + "x" : "";
    if (slider) slider.value = index + 1;
  }
  function go(i) {
    i = Math.max(0, Math.min(slices.length - 1, i));
    if (i === index) return;
    step = i > index ? 1 : -1;
    index = i;
    show(false);
  }
  function place() {
    img.style.transform = "translate(" + panX + "px," + panY + "px) scale(" + zoom + ")";
    zoomText.textContent = zoom !== 1 ? zoom.toFixed(1) + "x" : "";
  }
  function setZoom(z) { zoom = Math.min(8, Math.max(1, z)); if (zoom === 1) { panX = 0; panY = 0; } place(); }

  var presets = Array.prototype.slice.call(vp.querySelectorAll("[data-preset]"));
  presets.forEach(function (b) {
    b.addEventListener("click", function (e) {
      e.preventDefault();
      var p = b.getAttribute("data-preset").split(",");
      if (p.length === 2) { wc = Number(p[0]); ww = Number(p[1]); } else { wc = null; ww = null; }
      presets.forEach(function (o) { o.classList.toggle("current", o === b); });
      show(false);
    });
  });
  [["zoom-in", 1.25], ["zoom-out", 0.8], ["zoom-reset", 0]].forEach(function (z) {
    var b = document.getElementById(z[0]);
    if (b) b.addEventListener("click", function () { setZoom(z[1] ? zoom * z[1] : 1); });
  });
  if (slider) slider.addEventListener("input", function () { go(Number(slider.value) - 1); });

  // A mouse wheel's notch is one slice; a touchpad's small steps add up to one.
  var wheel = 0;
  stage.addEventListener("wheel", function (e) {
    e.preventDefault();
    if (e.ctrlKey) { setZoom(zoom * (e.deltaY < 0 ? 1.2 : 1 / 1.2)); return; }
    wheel += e.deltaMode === 0 ? e.deltaY : e.deltaY * 40;
    if (Math.abs(wheel) >= 40) { go(index + (wheel > 0 ? 1 : -1)); wheel = 0; }
  }, { passive: false });

  document.addEventListener("keydown", function (e) {
    if (typing(e.target) || e.target === slider || e.altKey || e.ctrlKey || e.metaKey) return;
    var page = Math.max(1, Math.round(slices.length / 10));
    switch (e.key) {
      case "ArrowDown": case "ArrowRight": go(index + 1); break;
      case "ArrowUp": case "ArrowLeft": go(index - 1); break;
      case "PageDown": go(index + page); break;
      case "PageUp": go(index - page); break;
      case "Home": go(0); break;
      case "End": go(slices.length - 1); break;
      case "+": case "=": setZoom(zoom * 1.25); break;
      case "-": setZoom(zoom * 0.8); break;
      case "0": setZoom(1); break;
      case "f": case "F": toggleFullscreen(); break;
      default: return;
    }
    e.preventDefault();
  });

  // Left-drag: window (sideways) and level (up and down); right-drag or Shift: pan.
  var drag = null;
  stage.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  stage.addEventListener("mousedown", function (e) {
    e.preventDefault();
    stage.focus();
    var pan = e.button !== 0 || e.shiftKey;
    if (!pan && wc === null) {
      wc = Number(img.getAttribute("data-wc-auto")) || 128;
      ww = Number(img.getAttribute("data-ww-auto")) || 256;
    }
    drag = { pan: pan, x: e.clientX, y: e.clientY, wc: wc, ww: ww, px: panX, py: panY };
  });
  window.addEventListener("mouseup", function () { drag = null; });
  window.addEventListener("mousemove", function (e) {
    if (!drag) return;
    var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (drag.pan) { panX = drag.px + dx; panY = drag.py + dy; place(); return; }
    var k = Math.max(1, drag.ww / 256);
    ww = Math.max(1, drag.ww + dx * k);
    wc = drag.wc + dy * k;
    presets.forEach(function (o) { o.classList.remove("current"); });
    show(true);
  });

  // One finger up or down: slices; two fingers: pinch to zoom, move to pan.
  var touch = null;
  function spread(t) { return Math.hypot(t[0].clientX - t[1].clientX, t[0].clientY - t[1].clientY) || 1; }
  function middle(t) { return { x: (t[0].clientX + t[1].clientX) / 2, y: (t[0].clientY + t[1].clientY) / 2 }; }
  function startTouch(t) {
    if (t.length === 1) touch = { one: true, y: t[0].clientY, from: index };
    else if (t.length >= 2) {
      var m = middle(t);
      touch = { one: false, d: spread(t), zoom: zoom, x: m.x, y: m.y, px: panX, py: panY };
    } else touch = null;
  }
  stage.addEventListener("touchstart", function (e) { e.preventDefault(); startTouch(e.touches); }, { passive: false });
  stage.addEventListener("touchmove", function (e) {
    e.preventDefault();
    if (!touch) return;
    if (touch.one) {
      var per = Math.max(8, stage.clientHeight / Math.min(slices.length, 40));
      go(touch.from + Math.round((touch.y - e.touches[0].clientY) / per));
    } else if (e.touches.length >= 2) {
      var m = middle(e.touches);
      setZoom(touch.zoom * spread(e.touches) / touch.d);
      panX = touch.px + m.x - touch.x; panY = touch.py + m.y - touch.y;
      place();
    }
  }, { passive: false });
  stage.addEventListener("touchend", function (e) { startTouch(e.touches); });

  show(false);

  // An ECG: gain and speed change the drawing in place; several waveforms scroll like slices.
  function ecg() {
    var pic = document.getElementById("waveform");
    if (!pic) return;
    var q = new URLSearchParams(pic.getAttribute("src").split("?")[1] || "");
    var gain = q.get("gain") || "10", speed = q.get("speed") || "25";
    function draw() {
      var s = slices[index];
      pic.src = "/cases/" + caseId + "/waveforms/" + s.n + "?o=" + encodeURIComponent(s.o) +
        "&gain=" + gain + "&speed=" + speed;
      vp.querySelectorAll("[data-gain]").forEach(function (a) { a.classList.toggle("current", a.getAttribute("data-gain") === gain); });
      vp.querySelectorAll("[data-speed]").forEach(function (a) { a.classList.toggle("current", a.getAttribute("data-speed") === speed); });
      if (slider) slider.value = index + 1;
    }
    vp.querySelectorAll("[data-gain]").forEach(function (a) {
      a.addEventListener("click", function (e) { e.preventDefault(); gain = a.getAttribute("data-gain"); draw(); });
    });
    vp.querySelectorAll("[data-speed]").forEach(function (a) {
      a.addEventListener("click", function (e) { e.preventDefault(); speed = a.getAttribute("data-speed"); draw(); });
    });
    function go(i) { i = Math.max(0, Math.min(slices.length - 1, i)); if (i !== index) { index = i; draw(); } }
    if (slider) slider.addEventListener("input", function () { go(Number(slider.value) - 1); });
    // True size (the paper's millimetres) or the whole width of the box, as on a tablet.
    var box = pic.parentNode, fit = document.getElementById("ecg-fit");
    if (window.matchMedia("(max-width: 800px)").matches) box.classList.add("fit");
    if (fit) fit.addEventListener("click", function () { box.classList.toggle("fit"); });
    document.addEventListener("keydown", function (e) {
      if (typing(e.target) || e.target === slider || slices.length < 2) return;
      if (e.key === "PageDown") { go(index + 1); e.preventDefault(); }
      if (e.key === "PageUp") { go(index - 1); e.preventDefault(); }
    });
  }
})();
