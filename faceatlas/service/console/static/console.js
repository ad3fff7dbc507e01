// FaceAtlas console: the few behaviours htmx does not cover (no inline scripts: the CSP forbids them).
(function () {
  "use strict";
  // Confirm destructive forms (delete, revoke, rotate) with their stated consequence. The server does
  // them only when the form says "confirmed" (set here once the dialog is accepted); sent without it
  // (this script not run), the answer is a page that asks first. "{field}" in the question is the
  // form's current value of that field (a merge names the two subjects chosen), or the chosen
  // option's data-label where it has one (an album's person: their name and id, not the id alone).
  function question(form) {
    return form.dataset.confirm.replace(/\{([a-z_]+)\}/g, function (whole, name) {
      var field = form.elements.namedItem(name);
      if (!field || typeof field.value !== "string") { return whole; }
      var chosen = field.options && field.selectedIndex >= 0 ? field.options[field.selectedIndex] : null;
      return chosen && chosen.dataset.label ? chosen.dataset.label : field.value;
    });
  }
  function confirmed(form) {
    if (!window.confirm(question(form))) { return false; }
    var field = form.querySelector("input[name=confirmed]");
    if (!field) {
      field = document.createElement("input");
      field.type = "hidden";
      field.name = "confirmed";
      form.appendChild(field);
    }
    field.value = "yes";
    return true;
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.classList && form.classList.contains("confirm") && !confirmed(form)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
  document.addEventListener("htmx:confirm", function (event) {
    var form = event.target;
    if (form.classList && form.classList.contains("confirm") && !confirmed(form)) {
      event.preventDefault();
    }
  });

  // A form's submit buttons are disabled while its request is in flight: a double click sent the
  // form twice (an enrolment done twice). The server's one-time token of the form is the guarantee
  // (a form sent twice answers its first outcome); this spares the second request.
  function setBusy(form, busy) {
    Array.prototype.forEach.call(form.querySelectorAll("button[type=submit], button:not([type]), input[type=submit]"),
      function (button) { button.disabled = busy; });
  }
  // Disabling the focused button (the one pressed) drops focus to the page, where it stayed once the
  // answer came: a keyboard or screen-reader user was sent back to the top. It goes back to that
  // control once it is enabled again, unless the user has moved focus meanwhile.
  var focusBefore = new WeakMap();
  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.tagName === "FORM") {
      var active = document.activeElement;
      if (active && active !== document.body && form.contains(active)) { focusBefore.set(form, active); }
      setBusy(form, true);
    }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.tagName === "FORM") {
      setBusy(form, false);
      var before = focusBefore.get(form);
      focusBefore.delete(form);
      var lost = !document.activeElement || document.activeElement === document.body;
      if (before && lost && before.isConnected && !before.disabled) { before.focus(); }
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    // a plain form (htmx's are handled above, and prevent the browser's own submit): disabled once
    // sent, after this event (a button disabled now would leave its own value out of the form)
    if (!event.defaultPrevented && form.tagName === "FORM") {
      window.setTimeout(function () { setBusy(form, true); }, 0);
    }
  });
  window.addEventListener("pageshow", function (event) {  // back to a page kept by the browser
    if (event.persisted) { Array.prototype.forEach.call(document.forms, function (form) { setBusy(form, false); }); }
  });

  function listFiles(input, list) {
    var names = Array.prototype.map.call(input.files, function (f) { return f.name; });
    list.textContent = names.length ? names.length + " photo(s): " + names.join(", ") : "";
  }

  function setup() {
    // Drag-and-drop of photos onto the enrolment drop zone (the file input stays usable by keyboard).
    var zone = document.getElementById("drop-zone");
    var input = document.getElementById("photos");
    var list = document.getElementById("drop-list");
    if (zone && input && list) {
      ["dragenter", "dragover"].forEach(function (name) {
        zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
      });
      ["dragleave", "drop"].forEach(function (name) {
        zone.addEventListener(name, function () { zone.classList.remove("over"); });
      });
      zone.addEventListener("drop", function (e) {
        e.preventDefault();
        input.files = e.dataTransfer.files;
        listFiles(input, list);
      });
      input.addEventListener("change", function () { listFiles(input, list); });
    }
    // Upload progress of the enrolment form.
    var form = document.getElementById("enrol-form");
    var bar = document.getElementById("enrol-progress");
    if (form && bar) {
      form.addEventListener("htmx:xhr:progress", function (e) {
        if (e.detail.lengthComputable) { bar.hidden = false; bar.value = 100 * e.detail.loaded / e.detail.total; }
      });
      form.addEventListener("htmx:afterRequest", function () { bar.hidden = true; });
    }
    // Live event feed (server-sent events): new rows on top.
    var table = document.getElementById("events");
    if (table && window.EventSource) {
      var source = new EventSource(table.dataset.stream);
      source.onmessage = function (message) {
        var e = JSON.parse(message.data);
        var row = document.createElement("tr");
        [e.wall_time.slice(0, 19).replace("T", " "), e.camera, e.type, (e.kind || "") + " " + (e.track_id === null ? "" : e.track_id),
         e.details].forEach(function (text) {
          var cell = document.createElement("td");
          cell.textContent = text;
          row.appendChild(cell);
        });
        var shot = document.createElement("td");
        if (e.data.snapshot) {
          var img = document.createElement("img");
          img.src = e.data.snapshot;  // the frame's address on the console (never the server's file path)
          img.alt = "frame kept with this " + e.type + " event";
          img.width = 120;
          shot.appendChild(img);
        }
        row.appendChild(shot);
        table.tBodies[0].insertBefore(row, table.tBodies[0].firstChild);
        var none = document.getElementById("no-events");
        if (none) { none.remove(); }
      };
      source.addEventListener("end", function () { source.close(); });
    }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", setup); } else { setup(); }
})();
