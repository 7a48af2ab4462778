
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
