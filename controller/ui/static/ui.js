// Outpost web UI: progressive enhancement only — every page works without this file.
// Auto-refresh: the page is re-fetched every N seconds (from the [data-refresh-control]
// bar) and each [data-refresh] region (by its id; a page may have several) is swapped in,
// unless the tab is hidden, the user paused it, or keyboard focus / a text selection is
// inside that region.  A session that ended stops the refresh and says so.
// Log panels ([data-follow]) follow the tail: scrolled to the bottom on load and kept
// there after an update; one the user scrolled up in is left alone until they return
// to the bottom.
// Ticked row checkboxes (bulk actions) stay ticked across a refresh; a [data-select-all]
// box ticks every box of its name on the page.
(function () {
  "use strict";

  function atBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 4;
  }

  function follows(region) {
    var inside = Array.prototype.slice.call(region.querySelectorAll("[data-follow]"));
    return region.hasAttribute("data-follow") ? [region].concat(inside) : inside;
  }

  function busyInside(region) {
    var focus = document.activeElement;
    if (region.contains(focus) && focus !== region && !focus.hasAttribute("data-follow")) return true;
    var sel = window.getSelection && window.getSelection();
    if (sel && !sel.isCollapsed && region.contains(sel.anchorNode)) return true;
    return follows(region).some(function (el) { return !atBottom(el); });
  }

  function toBottom(region) {
    follows(region).forEach(function (el) { el.scrollTop = el.scrollHeight; });
  }

  function start(control) {
    var regions = Array.prototype.slice.call(document.querySelectorAll("[data-refresh][id]"));
    if (!regions.length) return;
    var seconds = Math.max(parseInt(control.getAttribute("data-seconds"), 10) || 10, 2);
    var pause = control.querySelector("[data-pause]");
    var stamp = control.querySelector("[data-updated]");
    var paused = false;
    var busy = false;
    var timer = null;

    function stop(message) {
      window.clearInterval(timer);
      control.classList.add("stopped");
      control.querySelector("span").textContent = message;
      if (pause) pause.hidden = true;
    }

    function tick() {
      if (paused || busy || document.hidden || regions.every(busyInside)) return;
      busy = true;
      fetch(window.location.href, { credentials: "same-origin", headers: { "X-Outpost-Refresh": "1" } })
        .then(function (resp) {
          if (resp.redirected || resp.status === 401) {
            stop("Your session ended: reload the page to log in again.");
            return null;
          }
          if (!resp.ok) return null;
          return resp.text();
        })
        .then(function (html) {
          if (!html) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          var swapped = false;
          regions.forEach(function (region) {
            var fresh = doc.getElementById(region.id);
            if (!fresh || busyInside(region)) return;
            var ticked = {};
            region.querySelectorAll("input[type=checkbox][name]:checked").forEach(function (box) {
              ticked[box.name + "\n" + box.value] = true;
            });
            region.innerHTML = fresh.innerHTML;
            region.querySelectorAll("input[type=checkbox][name]").forEach(function (box) {
              if (ticked[box.name + "\n" + box.value]) box.checked = true;
            });
            toBottom(region);
            swapped = true;
          });
          if (swapped) showSelectAll();
          if (swapped && stamp) {
            var now = new Date();
            stamp.textContent = now.toISOString().substring(11, 19);
            stamp.setAttribute("datetime", now.toISOString());
          }
        })
        .catch(function () { /* the next tick tries again */ })
        .then(function () { busy = false; });
    }

    if (pause) {
      pause.addEventListener("click", function () {
        paused = !paused;
        pause.setAttribute("aria-pressed", paused ? "true" : "false");
        pause.textContent = paused ? "Resume updates" : "Pause updates";
        if (!paused) tick();
      });
    }
    document.addEventListener("visibilitychange", function () { if (!document.hidden) tick(); });
    timer = window.setInterval(tick, seconds * 1000);
  }

  // "select all on this page": shown only with this script; kept in step with the rows
  function boxes(name) {
    return document.querySelectorAll("input[type=checkbox][name='" + name + "']");
  }

  function showSelectAll() {
    document.querySelectorAll("[data-select-all]").forEach(function (all) {
      var rows = Array.prototype.slice.call(boxes(all.getAttribute("data-select-all")));
      all.hidden = false;
      all.checked = rows.length > 0 && rows.every(function (b) { return b.checked; });
      all.indeterminate = !all.checked && rows.some(function (b) { return b.checked; });
    });
  }

  document.addEventListener("change", function (ev) {
    var target = ev.target;
    if (!target || target.type !== "checkbox") return;
    var name = target.getAttribute("data-select-all");
    if (name) boxes(name).forEach(function (b) { b.checked = target.checked; });
    showSelectAll();
  });

  document.addEventListener("DOMContentLoaded", function () {
    toBottom(document.body);
    showSelectAll();
    var control = document.querySelector("[data-refresh-control]");
    if (control) start(control);
    // after a refused form, take keyboard and screen-reader users to the list of problems
    var summary = document.querySelector("[data-error-summary]");
    if (summary) summary.focus();
  });
})();
