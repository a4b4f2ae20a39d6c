// moodbot dashboard: live alerts over server-sent events. Plain JS, no inline script (CSP).
(function () {
  "use strict";
  var body = document.body;
  if (!body.dataset.live || !window.EventSource) return;
  var baseTitle = body.dataset.title || document.title;
  var after = body.dataset.lastAlert || "0";
  var source = new EventSource("/events?after=" + encodeURIComponent(after));

  function setCount(n) {
    document.title = (n > 0 ? "(" + n + ") " : "") + baseTitle;
    document.querySelectorAll("[data-live-count]").forEach(function (el) {
      el.textContent = String(n);
      if (el.classList.contains("badge")) el.classList.toggle("zero", n === 0);
    });
  }

  source.addEventListener("count", function (e) {
    setCount(JSON.parse(e.data).open);
  });

  source.addEventListener("alert", function (e) {
    var data = JSON.parse(e.data);
    var table = document.getElementById("open-alerts");
    if (!table || table.querySelector('[data-alert-id="' + data.id + '"]')) return;
    // the row is rendered and escaped by the server's template
    var holder = document.createElement("tbody");
    holder.innerHTML = data.html;
    var row = holder.firstElementChild;
    if (!row) return;
    row.querySelectorAll('input[name="next"]').forEach(function (el) { el.value = location.pathname; });
    row.classList.add("new");
    table.insertBefore(row, table.firstChild);
    var empty = table.closest("section") && table.closest("section").querySelector(".empty");
    if (empty) empty.remove();
  });

  source.addEventListener("logout", function () {
    source.close();
    location.href = "/login?next=" + encodeURIComponent(location.pathname);
  });
})();
