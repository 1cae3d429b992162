// The demo site's helpers (not part of the widget): show each page's embed snippet and, when
// the worker talks to the local WeChat simulator, the simulator's phone docked beside the page —
// above the follow dialog, so a person can scan the code on screen without a phone.
(function () {
  var lastQr = null, phone = null, phoneOrigin = null;
  // The phone lists the code this page shows first ("on the page beside").
  function tellPhone() {
    if (!phone || !lastQr || !lastQr.url) return;
    phone.contentWindow.postMessage({ wxedge_screen: { url: lastQr.url, scene: lastQr.scene || "", page: location.pathname } }, phoneOrigin);
  }
  window.addEventListener("wxedge:qr", function (e) {
    lastQr = e.detail;
    tellPhone();
  });
  var snippet = document.getElementById("snippet");
  var script = document.querySelector('script[src$="widget.js"]');
  if (snippet && script) snippet.textContent = script.outerHTML.replace(' async=""', ' async').replace(' src="/widget.js"', ' src="https://YOUR-WORKER.example/widget.js"');
  var toggle = document.getElementById("sim-phone-toggle"), panel = document.getElementById("sim-phone");
  if (!toggle || !panel) return;
  fetch("/api/health").then(function (r) { return r.json(); }).then(function (h) {
    if (!h.simulator) return; // only a development stack names its simulator
    phoneOrigin = new URL(h.simulator).origin;
    document.getElementById("sim-panel").hidden = false;
    toggle.hidden = false;
    function show(open) {
      if (open && !phone) {
        phone = document.createElement("iframe");
        phone.title = "Simulated WeChat phone";
        phone.src = phoneOrigin + "/";
        phone.addEventListener("load", tellPhone);
        panel.appendChild(phone);
      }
      panel.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
    }
    toggle.addEventListener("click", function () { show(panel.hidden); });
    document.getElementById("sim-phone-close").addEventListener("click", function () { show(false); });
  });
})();
