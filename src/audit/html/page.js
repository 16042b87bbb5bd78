// The computers table: filter by state and by name or UUID, sort by a column (click its header).
// Without this script the page shows the same table, whole, in the report's order.
(function () {
  "use strict";
  var table = document.getElementById("computers-table");
  var controls = document.getElementById("controls");
  if (!table || !controls) return;
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var haystacks = null; // name and UUID of each row, made at the first search

  var state = document.getElementById("filter-state");
  var search = document.getElementById("filter-name");
  var shown = document.getElementById("shown");
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function filter() {
    var wanted = state.value;
    var needle = search.value.trim().toLowerCase();
    var count = 0;
    haystacks = haystacks || rows.map(function (row) {
      return (row.cells[0].textContent + " " + row.cells[1].textContent).toLowerCase();
    });
    rows.forEach(function (row, i) {
      var show = (!wanted || row.getAttribute("data-state") === wanted) &&
        haystacks[i].indexOf(needle) !== -1;
      row.hidden = !show;
      if (show) count += 1;
    });
    shown.textContent = count + " of " + rows.length + " shown";
  }

  function sortBy(header, column) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(header.parentNode.cells, function (th) {
      th.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var keyed = rows.map(function (row, i) {
      var cell = row.cells[column];
      return { key: cell.getAttribute("data-sort") || cell.textContent, row: row, i: i };
    });
    keyed.sort(function (a, b) {
      var order = collator.compare(a.key, b.key);
      return (ascending ? order : -order) || a.i - b.i;
    });
    var fragment = document.createDocumentFragment();
    keyed.forEach(function (k) { fragment.appendChild(k.row); });
    body.appendChild(fragment);
  }

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = header.textContent;
    header.textContent = "";
    header.appendChild(button);
    button.addEventListener("click", function () { sortBy(header, column); });
  });
  state.addEventListener("change", filter);
  search.addEventListener("input", filter);
  controls.hidden = false;
  shown.textContent = rows.length + " of " + rows.length + " shown";
})();
