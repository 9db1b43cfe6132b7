/* The web UI's terminal: a live remote session (xterm.js over the session's WebSocket) or
   the replay of its recording (asciicast v2, with its timing; gaps capped at 1 s).
   Binary messages: a channel byte (0 input, 1 output, 2 error output) then the bytes;
   text messages: JSON control ({type: ready|exit|error|closed|resize}). */
(function () {
  "use strict";
  var el = document.getElementById("terminal");
  if (!el || typeof Terminal === "undefined") { return; }
  var status = document.getElementById("terminal-status");
  var term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000 });
  var fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  var encoder = new TextEncoder();
  function say(text) { status.textContent = text; }

  function replay() {
    el.dataset.replayed = "";
    term.reset();
    say("Replaying the recording…");
    fetch(el.dataset.recording, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (text) {
        var events = [];
        text.split("\n").slice(1).forEach(function (line) {
          if (!line) { return; }
          try { var e = JSON.parse(line); if (e[1] === "o") { events.push(e); } } catch (err) { /* skip */ }
        });
        var at = 0, delay = 0;
        events.forEach(function (e) {
          delay += Math.min(Math.max(0, e[0] - at), 1.0);
          at = e[0];
          setTimeout(function () { term.write(e[2]); }, delay * 1000);
        });
        setTimeout(function () { el.dataset.replayed = "1"; say("Replay finished."); }, delay * 1000 + 50);
      })
      .catch(function (err) { say("The recording could not be loaded: " + err.message); });
  }

  function live(ticket) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + el.dataset.attach);
    var closedReason = "";
    ws.binaryType = "arraybuffer";
    function send(channelBytes) { if (ws.readyState === 1) { ws.send(channelBytes); } }
    function resize() {
      if (ws.readyState === 1) { ws.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows })); }
    }
    ws.onopen = function () { ws.send(JSON.stringify({ ticket: ticket })); say("Waiting for the node…"); resize(); };
    ws.onmessage = function (ev) {
      if (typeof ev.data === "string") {
        var c = JSON.parse(ev.data);
        if (c.type === "ready") { say("Connected."); el.dataset.live = "1"; term.focus(); }
        else if (c.type === "exit") { say("The command exited" + (c.code === null ? "." : " with code " + c.code + ".")); }
        else if (c.type === "error") { closedReason = c.message; say("Refused or failed: " + c.message); }
        else if (c.type === "closed") { closedReason = closedReason || c.reason; say("Session closed: " + c.reason); }
        return;
      }
      var bytes = new Uint8Array(ev.data);
      if (bytes.length && bytes[0] !== 0) { term.write(bytes.subarray(1)); }
    };
    ws.onclose = function () {
      el.dataset.live = "";
      if (!closedReason) {
        say("The connection to the controller broke: the controller process relaying this session stopped. " +
            "The session is over; its recording is kept up to this moment.");
      }
    };
    term.onData(function (data) {
      var body = encoder.encode(data), frame = new Uint8Array(body.length + 1);
      frame[0] = 0;
      frame.set(body, 1);
      send(frame);
    });
    term.onResize(resize);
    window.addEventListener("resize", function () { fit.fit(); });
  }

  document.getElementById("replay-button").addEventListener("click", replay);
  var found = location.hash.match(/ticket=([A-Za-z0-9_\-]+)/);
  if (found && el.dataset.state !== "ended") {
    history.replaceState(null, "", location.pathname + location.search);
    live(found[1]);
  } else {
    replay();
  }
}());
