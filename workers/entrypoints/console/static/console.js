// The console's only script: refresh the parts marked data-refresh, preview a chosen CSV, confirm a cancel.
// Pages work without it (forms post, links load); it only keeps figures live and shows the preview.
(function () {
  "use strict";
  function refresh(el) {
    var every = parseInt(el.getAttribute("data-every") || "1500", 10);
    function tick() {
      fetch(el.getAttribute("data-refresh"), {headers: {"X-Console-Fragment": "1"}, credentials: "same-origin"})
        .then(function (r) {
          if (r.status === 401) { window.location = "/ui/login"; return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (html !== null) { el.innerHTML = html; } })
        .catch(function () {})
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }
  function preview(form) {
    var target = document.getElementById("preview");
    var file = form.querySelector("input[type=file]");
    if (!target || !file || !file.files.length) { return; }
    var data = new FormData(form);
    fetch("/ui/campaigns/preview", {method: "POST", body: data, credentials: "same-origin",
                                    headers: {"X-Console-Fragment": "1"}})
      .then(function (r) { return r.text(); })
      .then(function (html) { target.innerHTML = html; })
      .catch(function () { target.textContent = "preview unavailable"; });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(refresh);
    var form = document.getElementById("new-campaign");
    if (form) {
      form.querySelectorAll("[data-preview]").forEach(function (input) {
        input.addEventListener("change", function () { preview(form); });
      });
    }
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (ev) {
        if (!window.confirm(f.getAttribute("data-confirm"))) { ev.preventDefault(); }
      });
    });
  });
})();
