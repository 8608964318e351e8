// outbox-relay console: the one script. The pages work without it; it only keeps the
// delivery log's newest page fresh, by asking the server for the rows again (rendered and
// escaped there) every few seconds while the page is visible.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || !log.dataset.refresh) { return; }
  var url = log.dataset.refresh;
  function refresh() {
    if (document.hidden) { return; }
    fetch(url, { headers: { "X-Console-Fragment": "rows" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var rows = document.getElementById("rows");
        if (rows) { rows.innerHTML = html; }
      })
      .catch(function () {});
  }
  setInterval(refresh, 3000);
})();
