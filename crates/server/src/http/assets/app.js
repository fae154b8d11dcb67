// sprout dashboard: sortable and filterable tables, charts drawn as SVG, and the page's
// event stream (one per page). Everything shown is set with textContent: no markup is
// ever built from data.
"use strict";
(function () {
  var SVG = "http://www.w3.org/2000/svg";
  var W = 600, H = 160, PAD = 34;

  function el(name, attrs) {
    var e = document.createElementNS(SVG, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function fmt(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (v >= 100) return v.toFixed(0);
    return String(Math.round(v * 100) / 100);
  }

  // Draws the series of `hist` (columns, with t in seconds) named by the svg's
  // data-series into it.
  function draw(svg, hist) {
    var names = svg.getAttribute("data-series").split(",");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var t = hist.t || [];
    var max = 0;
    names.forEach(function (n) { (hist[n] || []).forEach(function (v) { if (v > max) max = v; }); });
    if (max <= 0) max = 1;
    // The last hour, or as much of it as there is.
    var t1 = t.length ? t[t.length - 1] : 0;
    var t0 = t.length ? Math.max(t1 - 3600, t[0]) : t1 - 3600;
    if (t1 - t0 < 10) t0 = t1 - 10;
    var span = t1 - t0;
    [0, 0.5, 1].forEach(function (f) {
      var y = H - 16 - f * (H - 24);
      svg.appendChild(el("line", { "class": "grid", x1: PAD, x2: W, y1: y, y2: y }));
      var tx = el("text", { x: 2, y: y + 4 });
      tx.textContent = fmt(max * f);
      svg.appendChild(tx);
    });
    var lab = el("text", { x: PAD, y: H - 2 });
    lab.textContent = span >= 120 ? "-" + Math.round(span / 60) + " min" : "-" + span + " s";
    svg.appendChild(lab);
    var now = el("text", { x: W - 24, y: H - 2 });
    now.textContent = "now";
    svg.appendChild(now);
    names.forEach(function (n, i) {
      var vs = hist[n] || [], pts = [];
      for (var j = 0; j < vs.length; j++) {
        if (t[j] < t0) continue;
        var x = PAD + (t[j] - t0) / span * (W - PAD);
        var y = H - 16 - vs[j] / max * (H - 24);
        pts.push(x.toFixed(1) + "," + y.toFixed(1));
      }
      // A single sample still shows, as a short flat line.
      if (pts.length === 1) pts.push((W - 2) + "," + pts[0].split(",")[1]);
      svg.appendChild(el("polyline", { "class": "s" + i, points: pts.join(" ") }));
    });
    var legend = document.querySelector('.legend[data-for="' + svg.id + '"]');
    if (legend && !legend.firstChild) {
      names.forEach(function (n, i) {
        var s = document.createElement("span");
        s.className = "s" + i;
        s.textContent = n;
        legend.appendChild(s);
      });
    }
  }

  var hist = null;
  function drawAll() {
    if (!hist) return;
    document.querySelectorAll("svg[data-series]").forEach(function (svg) { draw(svg, hist); });
  }
  function addPoint(p) {
    if (!hist || !p || p.t === undefined) return;
    var n = hist.t.length;
    if (n && hist.t[n - 1] >= p.t) return;
    for (var k in hist) {
      hist[k].push(p[k] || 0);
      if (hist[k].length > 3600) hist[k].shift();
    }
    drawAll();
  }

  // Tables: click (or Enter/Space on) a column's button to sort; the filter hides rows.
  var sortCol = 0, sortDir = 1;
  function cellValue(tr, col) {
    var c = tr.children[col];
    var v = c.getAttribute("data-v");
    var f = parseFloat(v);
    return col === 0 || isNaN(f) ? v : f;
  }
  function sortRows(table) {
    var tb = table.tBodies[0];
    var rows = Array.prototype.slice.call(tb.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, sortCol), y = cellValue(b, sortCol);
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
    });
    rows.forEach(function (r) { tb.appendChild(r); });
    table.querySelectorAll("thead button").forEach(function (b) {
      if (+b.getAttribute("data-col") === sortCol) {
        b.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      } else {
        b.removeAttribute("aria-sort");
      }
    });
  }
  function filterRows(table) {
    var input = document.getElementById("filter");
    var q = input ? input.value.trim() : "";
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
      r.classList.toggle("hidden", q !== "" && r.getAttribute("data-name").indexOf(q) < 0);
    });
  }

  // Rebuilds the tube table from an event's rows: [name, v1, text1, v2, text2, ...].
  function setRows(table, rows) {
    var tb = table.tBodies[0];
    var fresh = document.createElement("tbody");
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-name", r[0]);
      var th = document.createElement("th");
      th.setAttribute("scope", "row");
      th.setAttribute("data-v", r[0]);
      var a = document.createElement("a");
      a.href = "/tube/" + encodeURIComponent(r[0]);
      a.textContent = r[0];
      th.appendChild(a);
      tr.appendChild(th);
      for (var i = 1; i < r.length; i += 2) {
        var td = document.createElement("td");
        td.setAttribute("data-v", r[i]);
        td.textContent = r[i + 1];
        tr.appendChild(td);
      }
      fresh.appendChild(tr);
    });
    table.replaceChild(fresh, tb);
    sortRows(table);
    filterRows(table);
  }

  function setSummary(s) {
    for (var k in s) {
      document.querySelectorAll('[data-k="' + k + '"]').forEach(function (e) {
        e.textContent = s[k];
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var h = document.getElementById("history");
    if (h) {
      try { hist = JSON.parse(h.textContent); } catch (e) { hist = null; }
      drawAll();
    }
    var table = document.getElementById("tubes");
    if (table) {
      table.querySelectorAll("thead button").forEach(function (b) {
        b.addEventListener("click", function () {
          var col = +b.getAttribute("data-col");
          sortDir = col === sortCol ? -sortDir : 1;
          sortCol = col;
          sortRows(table);
        });
      });
      var input = document.getElementById("filter");
      if (input) input.addEventListener("input", function () { filterRows(table); });
      sortRows(table);
    }
    var url = document.body.getAttribute("data-events");
    if (url && window.EventSource) {
      var es = new EventSource(url);
      es.onmessage = function (ev) {
        var d = JSON.parse(ev.data);
        if (d.s) setSummary(d.s);
        if (d.p) addPoint(d.p);
        if (d.rows && table) {
          setRows(table, d.rows);
          var note = document.getElementById("tubes-note");
          if (note && d.n <= d.rows.length) note.textContent = d.n + " tubes";
        }
        document.body.setAttribute("data-updated", String(Date.now()));
      };
      window.addEventListener("pagehide", function () { es.close(); });
    }
  });
})();
