"""The site's own CSS and JavaScript, written once into assets/ next to Plotly's bundle.

The script is deliberately small: it draws each Plotly figure from its JSON island and makes tables sortable
by clicking a header. It never builds HTML from data (only textContent and DOM moves), so escaped text stays
text.
"""

SITE_CSS = """
:root { --fg:#1d2433; --muted:#5b6478; --line:#dde1ea; --bg:#fff; --soft:#f5f7fb; --accent:#2b5fd9;
        --bad:#b42318; --warn:#b54708; --good:#067647; --syn:#7a2e9e; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg);
       background:var(--bg); }
header.top { display:flex; gap:2rem; align-items:center; padding:.6rem 1.5rem; background:#111827; }
header.top a { color:#e5e7eb; text-decoration:none; }
header.top a.brand { font-weight:700; color:#fff; }
header.top nav a { margin-right:1.2rem; }
header.top nav a[aria-current=page] { color:#fff; border-bottom:2px solid #8fb3ff; }
main { max-width:1280px; margin:0 auto; padding:1rem 1.5rem 2rem; }
h1 { font-size:1.6rem; margin:.6rem 0 .2rem; overflow-wrap:anywhere; }
h2 { font-size:1.2rem; margin:2rem 0 .5rem; border-bottom:1px solid var(--line); padding-bottom:.2rem; }
h3 { font-size:1.05rem; margin:1.2rem 0 .4rem; }
p.meta { color:var(--muted); margin:.2rem 0 1rem; font-size:.9rem; }
p.lead { font-size:1.05rem; }
.note { color:var(--muted); font-size:.9rem; }
.answer { padding:.8rem 1rem; border-left:4px solid #4e79a7; background:#f1f5fb; border-radius:4px; margin:1rem 0; }
ul.studies li { margin:.6rem 0; }
figure.svg-plot { margin:0 0 1rem; max-width:760px; }
.profile-svg { width:100%; height:auto; font-family:system-ui, sans-serif; }
.profile-svg .grid { stroke:#e5e7eb; stroke-width:1; }
.profile-svg .tick { font-size:11px; fill:#6b7280; }
.profile-svg .axis { font-size:12px; fill:#374151; }
.profile-svg .legend { font-size:11px; fill:#111827; }
.profile-svg .line:hover { stroke-width:4; }
.empty { padding:2rem; text-align:center; border:2px dashed var(--line); border-radius:8px; color:var(--muted);
         font-size:1.1rem; }
.warnbox { border-left:4px solid var(--warn); background:#fffaeb; padding:.5rem 1rem; margin:1rem 0; }
.table-wrap { overflow-x:auto; margin:.5rem 0 1rem; }
table { border-collapse:collapse; font-size:.88rem; min-width:50%; }
caption { text-align:left; color:var(--muted); padding:.2rem 0; caption-side:bottom; font-size:.85rem; }
th, td { padding:.35rem .6rem; border-bottom:1px solid var(--line); text-align:right; vertical-align:top; }
th:first-child, td:first-child, td.text, th.text { text-align:left; }
td { white-space:nowrap; }
td.long { max-width:40rem; min-width:16rem; white-space:normal; overflow-wrap:anywhere; }
thead th { background:var(--soft); position:sticky; top:0; cursor:pointer; user-select:none; white-space:nowrap; }
thead th[aria-sort=ascending]::after { content:" ▲"; font-size:.7em; }
thead th[aria-sort=descending]::after { content:" ▼"; font-size:.7em; }
tbody tr:hover { background:#f0f4ff; }
tr.all-failed td { color:var(--muted); background:#fff5f5; }
td.best { font-weight:700; color:var(--good); }
td.miss { color:var(--muted); }
a { color:var(--accent); }
code, pre { font-family:ui-monospace, SFMono-Regular, Menlo, monospace; font-size:.85em; }
pre { background:var(--soft); padding:.5rem; overflow-x:auto; white-space:pre-wrap; overflow-wrap:anywhere; }
.badge { display:inline-block; font-size:.72rem; padding:0 .4rem; margin-left:.3rem; border-radius:999px;
         border:1px solid currentColor; white-space:nowrap; vertical-align:middle; }
.badge.synthetic { color:var(--syn); }
.badge.failed, .badge.timeout { color:var(--bad); }
.badge.diverged { color:var(--warn); }
.badge.winner { color:var(--good); }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit, minmax(480px, 1fr)); gap:1rem; }
figure.plot-box { margin:0; border:1px solid var(--line); border-radius:6px; padding:.3rem; min-width:0; }
div.plot { width:100%; min-height:340px; }
p.caption { color:var(--muted); font-size:.85rem; margin:.2rem .4rem; }
ul.links { columns:3 16rem; padding-left:1.2rem; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:.2rem 1rem; }
dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; overflow-wrap:anywhere; }
footer { border-top:1px solid var(--line); padding:1rem 1.5rem; color:var(--muted); font-size:.85rem;
         max-width:1280px; margin:0 auto; }
"""

SITE_JS = r"""
(function () {
  "use strict";
  function drawPlots() {
    var divs = document.querySelectorAll("div.plot[data-figure]");
    if (!divs.length) return;
    if (typeof Plotly === "undefined") {
      divs.forEach(function (d) { d.textContent = "Plotly (assets/plotly.min.js) did not load."; });
      return;
    }
    divs.forEach(function (div) {
      var island = document.getElementById(div.getAttribute("data-figure"));
      if (!island) return;
      var fig = JSON.parse(island.textContent);
      Plotly.newPlot(div, fig.data, fig.layout, {responsive: true, displaylogo: false});
    });
  }
  function sortValue(td) {
    if (!td) return null;
    var raw = td.getAttribute("data-sort");
    if (raw === null || raw === "") return null;
    var n = Number(raw);
    return isNaN(n) ? raw.toLowerCase() : n;
  }
  function makeSortable(table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, col) {
      function sort() {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = sortValue(a.cells[col]), y = sortValue(b.cells[col]);
          if (x === null && y === null) return 0;
          if (x === null) return 1;   // missing values always last
          if (y === null) return -1;
          var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
  }
  document.querySelectorAll("table.sortable").forEach(makeSortable);
  drawPlots();
})();
"""
