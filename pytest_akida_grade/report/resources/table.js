(function () {
  var table = document.getElementById("akida-class-table");
  if (!table || table.getAttribute("data-sort-ready")) { return; }
  table.setAttribute("data-sort-ready", "1");
  var heads = table.tHead.rows[table.tHead.rows.length - 1].cells;
  function key(row, col) {
    var cell = row.cells[col];
    return cell ? (cell.getAttribute("data-sort") || "") : "";
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      var numeric = th.getAttribute("data-type") === "number";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a, col), y = key(b, col);
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var d = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return asc ? d : -d;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
})();
