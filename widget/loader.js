// The embed loader: one async <script src=".../widget.js" data-url=...>.
// It must find its own .wasm next to itself, so it captures its URL while it first runs
// (document.currentScript is null later, inside callbacks).
import init, { mount } from "wasm-glue";

(function () {
  if (window.__wxedgeLoaded) return; // the snippet pasted twice must not mount twice
  window.__wxedgeLoaded = true;
  var self = document.currentScript || document.querySelector('script[src*="widget.js"]');
  var base = self && self.src ? self.src : location.href;
  var wasmUrl = new URL("widget_bg.wasm", base).href;
  var ready = init({ module_or_path: wasmUrl });

  function mountAll() {
    var hosts = document.querySelectorAll("[data-wxedge-qr]");
    for (var i = 0; i < hosts.length; i++) {
      var el = hosts[i];
      try {
        mount(el, el.getAttribute("data-wxedge-qr"), el.getAttribute("data-title") || "Follow us on WeChat");
        el.setAttribute("data-wxedge-state", "ready");
      } catch (e) {
        el.setAttribute("data-wxedge-state", "error");
        console.error("wxedge: cannot render the QR code:", e);
      }
    }
  }

  ready.then(function () {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
    else mountAll();
  }, function (e) {
    console.error("wxedge: the widget could not start (is 'wasm-unsafe-eval' allowed by the page's CSP?):", e);
  });
})();
