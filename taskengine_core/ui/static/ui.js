// Shows every <time datetime="..."> in the viewer's own time zone as well (the page has UTC).
(function () {
  function localise(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var moment = new Date(el.getAttribute("datetime"));
      if (isNaN(moment)) { return; }
      el.setAttribute("data-local", "1");
      el.title = el.textContent;
      el.textContent = moment.toLocaleString(undefined, { year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  document.addEventListener("htmx:afterSettle", function (e) { localise(e.target); });
})();
