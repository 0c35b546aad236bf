// mailvault's pages: keyboard shortcuts on top of pages that work without script.
// "/" focuses the query box; on a result list "j"/"k" move the selection and Enter opens it.
(function () {
  "use strict";
  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }
  var selected = -1;
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr.hit")); }
  function select(index) {
    var all = rows();
    if (all.length === 0) { return; }
    index = Math.max(0, Math.min(all.length - 1, index));
    all.forEach(function (row, i) { row.classList.toggle("selected", i === index); });
    all[index].setAttribute("aria-selected", "true");
    all[index].scrollIntoView({ block: "nearest" });
    selected = index;
  }
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) { return; }
    if (event.key === "/") {
      var q = document.getElementById("q");
      if (q) { event.preventDefault(); q.focus(); q.select(); }
    } else if (event.key === "j") {
      select(selected + 1);
    } else if (event.key === "k") {
      select(selected < 0 ? 0 : selected - 1);
    } else if (event.key === "Enter" && selected >= 0) {
      var link = rows()[selected] && rows()[selected].querySelector("a.open");
      if (link) { event.preventDefault(); window.location.href = link.href; }
    }
  });
})();
