// cals-bench reports: click a header of a table.sortable to sort its rows (click again to reverse).
// Cells sort by their data-sort attribute when present (numbers compare numerically, empty cells last),
// else by their text. No dependencies; inlined into the page.
(function () {
  "use strict";
  function key(cell) {
    if (!cell) return { empty: true, num: NaN, text: "" };
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    var num = raw === "" ? NaN : Number(raw);
    return { empty: raw === "" || raw === "-", num: num, text: raw.toLowerCase() };
  }
  function compare(a, b) {
    if (a.empty !== b.empty) return a.empty ? 1 : -1;
    if (!isNaN(a.num) && !isNaN(b.num)) return a.num - b.num;
    return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
  }
  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    if (!body) return;
    var descending = th.getAttribute("aria-sort") === "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var k1 = key(r1.cells[index]), k2 = key(r2.cells[index]);
      if (k1.empty || k2.empty) return compare(k1, k2);
      var c = compare(k1, k2);
      return descending ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  function init() {
    var tables = document.querySelectorAll("table.sortable");
    Array.prototype.forEach.call(tables, function (table) {
      if (!table.tHead || !table.tHead.rows.length) return;
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
        th.setAttribute("tabindex", "0");
        th.setAttribute("title", (th.getAttribute("title") ? th.getAttribute("title") + " - " : "") + "click to sort");
        th.addEventListener("click", function () { sortBy(table, i, th); });
        th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, i, th); });
      });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
