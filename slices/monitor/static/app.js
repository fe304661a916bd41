// GPT-Trader monitor pages: live updates by polling (no page reload) and SVG charts.
// Everything from the server arrives either as HTML fragments the server escaped, or as JSON
// that is only ever written with textContent / setAttribute of numbers.
(function () {
  "use strict";
  var main = document.querySelector("main");
  if (!main) { return; }
  var refresh = Math.max(0.2, parseFloat(main.dataset.refresh || "0")) * 1000;
  var status = document.getElementById("live-status");
  var live = document.getElementById("live");
  var SVGNS = "http://www.w3.org/2000/svg";
  var lastEquityKey = null;

  function setStatus(text) { if (status) { status.textContent = text; } }

  function el(name, attrs) {
    var node = document.createElementNS(SVGNS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }

  function fmtMoney(x) {
    return x == null ? "" : x.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  function fmtPct(x) { return x == null ? "" : (x * 100).toFixed(2) + "%"; }
  function day(t) { return t ? String(t).slice(0, 10) : ""; }

  // One series in an SVG with viewBox 0 0 W H; area=true fills down to zero (drawdown).
  function draw(svg, points, key, area, fmt) {
    if (!svg) { return; }
    var vb = svg.viewBox.baseVal, W = vb.width, H = vb.height, pad = 18;
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var ys = points.map(function (p) { return p[key]; }).filter(function (v) { return v != null && isFinite(v); });
    if (ys.length < 1) {
      var t = el("text", { x: 10, y: H / 2 }); t.textContent = "no data yet"; svg.appendChild(t); return;
    }
    var lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys);
    if (area) { hi = Math.max(hi, 0); }
    if (hi === lo) { hi = lo + (Math.abs(lo) || 1) * 0.01; lo = lo - (Math.abs(lo) || 1) * 0.01; }
    var n = points.length;
    function X(i) { return n > 1 ? (i * (W - 2)) / (n - 1) + 1 : W / 2; }
    function Y(v) { return pad + (H - 2 * pad) * (1 - (v - lo) / (hi - lo)); }
    [lo, (lo + hi) / 2, hi].forEach(function (v) {
      svg.appendChild(el("line", { x1: 0, x2: W, y1: Y(v), y2: Y(v), "class": "grid" }));
    });
    var d = [];
    points.forEach(function (p, i) {
      var v = p[key];
      if (v != null && isFinite(v)) { d.push((d.length ? "L" : "M") + X(i).toFixed(2) + "," + Y(v).toFixed(2)); }
    });
    if (area) {
      svg.appendChild(el("path", { d: "M" + X(0).toFixed(2) + "," + Y(0).toFixed(2) + d.join("").replace(/^M/, "L") +
        "L" + X(n - 1).toFixed(2) + "," + Y(0).toFixed(2) + "Z", "class": "area series" }));
    } else {
      svg.appendChild(el("path", { d: d.join(""), "class": "line series" }));
    }
    var top = el("text", { x: 4, y: 12 }); top.textContent = fmt(hi); svg.appendChild(top);
    var bottom = el("text", { x: 4, y: H - 4 }); bottom.textContent = fmt(lo); svg.appendChild(bottom);
    var left = el("text", { x: W / 2 - 30, y: H - 4 });
    left.textContent = day(points[0].time) + " .. " + day(points[n - 1].time); svg.appendChild(left);
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    });
  }

  function updateCharts() {
    var url = main.dataset.equity;
    if (!url) { return Promise.resolve(); }
    return getJSON(url).then(function (data) {
      var pts = data.points || [];
      var last = pts.length ? pts[pts.length - 1] : null;
      var key = data.rows + "|" + (last ? last.time + "|" + last.equity : "");
      if (key === lastEquityKey) { return; }
      lastEquityKey = key;
      draw(document.getElementById("equity-chart"), pts, "equity", false, fmtMoney);
      draw(document.getElementById("drawdown-chart"), pts, "drawdown", true, fmtPct);
      var eqLast = document.getElementById("equity-last");
      if (eqLast) { eqLast.textContent = last ? day(last.time) + " " + fmtMoney(last.equity) + " (" + data.rows + " bars)" : ""; }
      var ddLast = document.getElementById("drawdown-last");
      if (ddLast) { ddLast.textContent = last ? fmtPct(last.drawdown) : ""; }
    });
  }

  function updateFragment() {
    if (!live || !live.dataset.fragment) { return Promise.resolve(); }
    return fetch(live.dataset.fragment, { credentials: "same-origin", headers: { Accept: "text/html" } }).then(function (r) {
      if (!r.ok && r.status !== 404) { throw new Error("HTTP " + r.status); }
      return r.text();
    }).then(function (text) { live.innerHTML = text; });  // server-escaped HTML (pages.py)
  }

  var busy = false;
  function tick() {
    if (busy) { return; }
    busy = true;
    Promise.all([updateCharts(), updateFragment()]).then(function () {
      setStatus("updated " + new Date().toLocaleTimeString());
    }).catch(function (err) {
      setStatus("offline: " + err.message);
    }).then(function () { busy = false; });
  }

  tick();
  if (refresh > 0 && (main.dataset.equity || (live && live.dataset.fragment))) { setInterval(tick, refresh); }
})();
