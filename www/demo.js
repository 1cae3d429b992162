// The demo site's helpers (not part of the widget): show each page's embed snippet and, when
// the worker talks to the local WeChat simulator, a button that scans the code on screen as a
// new follower would — so the whole follow flow can be watched without a phone.
(function () {
  var log = document.getElementById("sim-log");
  var scanButton = document.getElementById("sim-scan");
  var lastQr = null;
  window.addEventListener("wxedge:qr", function (e) {
    lastQr = e.detail;
    if (scanButton) scanButton.disabled = !lastQr || !lastQr.visit;
  });
  window.addEventListener("wxedge:followed", function () {
    say("The widget saw the follow.");
  });
  function say(text) {
    if (!log) return;
    var li = document.createElement("li");
    li.textContent = text;
    log.appendChild(li);
  }
  var snippet = document.getElementById("snippet");
  var script = document.querySelector('script[src$="widget.js"]');
  if (snippet && script) snippet.textContent = script.outerHTML.replace(' async=""', ' async').replace(' src="/widget.js"', ' src="https://YOUR-WORKER.example/widget.js"');
  if (!scanButton) return;
  fetch("/api/health").then(function (r) { return r.json(); }).then(function (h) {
    if (!h.simulator) return; // only a development stack names its simulator
    h.api_base = h.simulator;
    document.getElementById("sim-panel").hidden = false;
    scanButton.addEventListener("click", function () {
      if (!lastQr) return;
      scanButton.disabled = true;
      fetch(h.api_base + "/sim/scan", { method: "POST", body: JSON.stringify({ url: lastQr.url }) })
        .then(function (r) { return r.json(); })
        .then(function (a) {
          var reply = (a.reply || "").match(/<Content><!\[CDATA\[([\s\S]*?)\]\]><\/Content>/);
          say("WeChat: " + a.openid + " " + a.event + (a.scene ? " (scene " + a.scene + ")" : "") + " → the worker answered HTTP " + a.status);
          if (reply) say("Welcome message the follower got: " + reply[1]);
        })
        .catch(function (e) { say("The simulator did not answer: " + e); });
    });
  });
})();
