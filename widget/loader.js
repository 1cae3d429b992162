// The embed loader: one async <script src=".../widget.js" data-account=... data-prompt=...>.
// - finds its own .wasm next to itself while it first runs (document.currentScript is null in
//   callbacks later);
// - takes settings from the script's data-* attributes and the window.wxedge queue, which a page
//   may fill before this script has loaded: window.wxedge = window.wxedge || [];
//   wxedge.push(["prompt", "inline", "#follow"]);
// - runs once even if the snippet is pasted twice;
// - when the page's CSP blocks WebAssembly, shows a plain QR image from the worker instead.
import init, { boot, command, mount } from "wasm-glue";

(function () {
  var w = window;
  // `make bench` measures from here to the first code drawn ("wxedge:qr").
  if (w.performance && performance.mark) performance.mark("wxedge:script");
  if (w.__wxedgeLoaded) return;
  w.__wxedgeLoaded = true;
  var self = document.currentScript || document.querySelector('script[src*="widget.js"]');
  var src = self && self.src ? self.src : location.href;
  var ds = (self && self.dataset) || {};
  var settings = {
    api: (ds.api || new URL(src).origin).replace(/\/$/, ""),
    account: ds.account, mode: ds.mode, qrUrl: ds.qrUrl, lang: ds.lang, theme: ds.theme,
    scene: ds.scene, page: ds.page, menu: ds.menu, target: ds.target,
    intent: ds.intent, nonce: ds.nonce, unlock: ds.unlock,
    prompt: ds.prompt === undefined ? "floating" : ds.prompt,
  };
  var queued = Array.isArray(w.wxedge) ? w.wxedge.slice() : [];
  var pending = [];
  w.wxedge = { push: function (args) { pending.push(args); } };

  function run(args) {
    try { command(args); } catch (e) { console.error("wxedge:", e); }
  }

  function mountStaticCards() {
    var hosts = document.querySelectorAll("[data-wxedge-qr]");
    for (var i = 0; i < hosts.length; i++) {
      var el = hosts[i];
      try {
        mount(el, el.getAttribute("data-wxedge-qr"), el.getAttribute("data-title") || "Follow us on WeChat");
        el.setAttribute("data-wxedge-state", "ready");
        if (w.performance && performance.mark) performance.mark("wxedge:qr");
      } catch (e) {
        el.setAttribute("data-wxedge-state", "error");
        console.error("wxedge: cannot render the QR code:", e);
      }
    }
  }

  function start() {
    // Settings queued as ["config", {...}] apply before the prompts are drawn.
    queued.forEach(function (a) { if (a && a[0] === "config") Object.assign(settings, a[1]); });
    try { boot(settings); } catch (e) { console.error("wxedge:", e); }
    queued.forEach(function (a) { if (a && a[0] !== "config") run(a); });
    pending.forEach(run);
    w.wxedge = { push: run };
    mountStaticCards();
    document.documentElement.setAttribute("data-wxedge", "ready");
  }

  // The scene label when the page gives none: the path, as the widget itself derives it.
  function sceneOf(page) {
    return settings.scene || page.replace(/^\/+|\/+$/g, "").replace(/\//g, "-") || "home";
  }

  // The console line names the real cause: a CSP without 'wasm-unsafe-eval' and a wasm that
  // could not be fetched (network, or a worker whose assets lack CORS) need different fixes.
  function whyNoWasm(error) {
    var text = String(error && error.message || error);
    if (/Content Security Policy|unsafe-eval|CompileError|Refused to compile/i.test(text))
      return "this page's Content-Security-Policy blocks WebAssembly (add 'wasm-unsafe-eval' to script-src)";
    if (error && error.name === "TypeError")
      return "could not load " + wasmUrl + " (offline, blocked, or served without Access-Control-Allow-Origin)";
    return "WebAssembly could not start";
  }

  // Without WebAssembly: the worker draws the code as an image, fetched only when the visitor
  // asks (each image is a visit with a code of its own); no dialog, no live status.
  function fallback(error) {
    console.warn("wxedge: " + whyNoWasm(error) + "; showing a plain QR image instead. (" + error + ")");
    var page = settings.page || location.pathname;
    var target = settings.target && document.querySelector(settings.target);
    var host = target || document.body.appendChild(document.createElement("div"));
    var root = host.shadowRoot || host.attachShadow({ mode: "open" });
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(":host{all:initial;font:14px/1.4 system-ui,sans-serif;color:#191919}" +
      ".box{background:#fff;border:1px solid #e5e5e5;border-radius:12px;padding:12px;text-align:center;width:180px}" +
      (target ? "" : ".box{position:fixed;right:20px;bottom:20px;z-index:2147483000;box-shadow:0 8px 32px #0003}") +
      "img{width:150px;height:150px;display:block;margin:6px auto}" +
      "button{font:inherit;margin-top:8px;padding:6px 12px;border-radius:8px;border:1px solid #07c160;background:#07c160;color:#fff;cursor:pointer}");
    root.adoptedStyleSheets = [sheet];
    var box = document.createElement("div");
    box.className = "box";
    box.setAttribute("role", "region");
    var title = (settings.account ? "Follow " + settings.account : "Follow us") + " on WeChat";
    box.setAttribute("aria-label", title);
    var p = document.createElement("div");
    p.textContent = title;
    var show = document.createElement("button");
    show.type = "button";
    show.textContent = "Show the QR code";
    show.addEventListener("click", function () {
      var img = document.createElement("img");
      img.alt = title;
      // A visit first (POST, origin-checked), then its code as an image; where the page's CSP
      // blocks the request, the image alone draws the account's ordinary code.
      var draw = function (visit) {
        img.src = settings.api + "/api/qr.svg" + (visit ? "?visit=" + encodeURIComponent(visit) : "");
        if (visit) img.setAttribute("data-visit", visit);
        if (show.parentNode) box.replaceChild(img, show);
      };
      fetch(settings.api + "/api/qr", { method: "POST", body: JSON.stringify({ page: page, scene: sceneOf(page) }) })
        .then(function (r) { return r.ok ? r.json() : {}; })
        .then(function (v) { draw(v.visit); }, function () { draw(null); });
    });
    box.appendChild(p);
    box.appendChild(show);
    root.appendChild(box);
    document.documentElement.setAttribute("data-wxedge", "fallback");
  }

  // The build names the content-hashed wasm (scripts/build.sh); unbuilt, the plain name.
  var wasmUrl = new URL(typeof WXEDGE_WASM === "string" ? WXEDGE_WASM : "widget_bg.wasm", src).href;
  init({ module_or_path: wasmUrl }).then(function () {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
    else start();
  }, function (e) {
    var go = function () { fallback(e); };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", go);
    else go();
  });
})();
