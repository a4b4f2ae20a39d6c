// moodbot dashboard: live alerts over server-sent events. Plain JS, no inline script (CSP).
(function () {
  "use strict";
  var body = document.body;
  if (!body.dataset.live || !window.EventSource) return;
  var baseTitle = body.dataset.title || document.title;
  var after = body.dataset.lastAlert || "0";
  var listed = [];
  document.querySelectorAll("#open-alerts [data-alert-id]").forEach(function (el) {
    listed.push(el.getAttribute("data-alert-id"));
  });
  var source = new EventSource("/events?after=" + encodeURIComponent(after) + "&open=" + listed.slice(0, 500).join(","));

  function setCount(n) {
    document.title = (n > 0 ? "(" + n + ") " : "") + baseTitle;
    document.querySelectorAll("[data-live-count]").forEach(function (el) {
      el.textContent = String(n);
      if (el.classList.contains("badge")) el.classList.toggle("zero", n === 0);
    });
  }

  source.addEventListener("count", function (e) {
    var data = JSON.parse(e.data);
    setCount(data.open);
    (data.acked || []).forEach(function (id) {
      var row = document.querySelector('#open-alerts [data-alert-id="' + id + '"]');
      if (row) row.remove();
    });
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

  function toLogin() {
    source.close();
    location.href = "/login?next=" + encodeURIComponent(location.pathname);
  }

  source.addEventListener("logout", toLogin);

  // the browser reconnects by itself after a dropped connection; a refused one (401: the session
  // ended, e.g. the dashboard restarted) closes the stream for good, and the page must say so
  source.onerror = function () {
    if (source.readyState !== EventSource.CLOSED) return;
    fetch("/api/summary", { credentials: "same-origin" }).then(function (response) {
      if (response.status === 401) return toLogin();
      showStopped();
    }, showStopped);
  };

  function showStopped() {
    if (document.getElementById("live-stopped")) return;
    var note = document.createElement("p");
    note.id = "live-stopped";
    note.className = "error";
    note.setAttribute("role", "alert");
    note.textContent = body.dataset.stopped || "Live updates have stopped: reload the page.";
    var main = document.querySelector("main") || body;
    main.insertBefore(note, main.firstChild);
  }
})();
