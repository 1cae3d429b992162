// The widget as a company embeds it: the snippet on a page served from a second origin (another
// loopback port, which Chromium treats as another site), loading the worker's widget.js and
// widget_bg.wasm cross-origin. Desktop, phone and WeChat's in-app browser each run the whole flow:
// the code is drawn by the wasm (not the image fallback), the simulator scans it, the page sees
// the follow.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { chromium } from "playwright-core";
import { join } from "node:path";
import { startStack, freePort, ROOT } from "./support/stack.mjs";

const IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";
const WECHAT = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/130.0 Mobile Safari/537.36 MicroMessenger/8.0.49.2600(0x28003133) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN";
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true };

let s, browser, host, hostBase;
before(async () => {
  const hostPort = await freePort();
  hostBase = `http://127.0.0.1:${hostPort}`;
  s = await startStack({ ALLOWED_ORIGINS: hostBase });
  // The company's own site: one page with the snippet, pointing at the worker's origin.
  host = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><html lang="en"><head><meta name="viewport" content="width=device-width, initial-scale=1">
      <title>Shop</title></head><body><h1>A shop on its own origin</h1><div id="slot"></div>
      <script async src="${s.base}/widget.js" data-account="AcmeTea" data-prompt="inline" data-target="#slot" data-scene="shop"></script>
      </body></html>`);
  });
  await new Promise((r) => host.listen(hostPort, "127.0.0.1", r));
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => { await browser?.close(); host?.close(); await s?.stop(); });

async function embedFlow(context, drawn) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 }, ...context });
  const page = await ctx.newPage();
  const logs = [];
  page.on("console", (m) => logs.push({ type: m.type(), text: m.text() }));
  page.on("pageerror", (e) => logs.push({ type: "pageerror", text: String(e) }));
  await page.addInitScript(() => {
    window.addEventListener("wxedge:qr", (e) => { window.__qr = e.detail; });
    window.addEventListener("wxedge:followed", () => { window.__followed = true; });
  });
  await page.goto(hostBase + "/");
  // "ready", not "fallback": the wasm loaded across origins.
  await page.waitForSelector("html[data-wxedge]");
  assert.equal(await page.evaluate(() => document.documentElement.getAttribute("data-wxedge")), "ready",
    "widget mode (not the fallback): " + JSON.stringify(logs));
  await page.locator("#slot button").first().click();
  await page.waitForFunction(() => window.__qr && window.__qr.visit, null, { timeout: 10000 });
  const qr = await page.evaluate(() => window.__qr);
  // How the code is drawn fits the browser: inline SVG on a desktop, a PNG <img> of at least
  // 200 CSS px on phones and in WeChat (whose long press reads only images).
  await page.waitForFunction(() => { const q = document.querySelector("[data-wxedge=dialog]")?.shadowRoot.querySelector(".qr"); return q && (q.querySelector("svg") || q.querySelector("img")?.naturalWidth > 0); });
  const code = await page.evaluate(() => {
    const q = document.querySelector("[data-wxedge=dialog]").shadowRoot.querySelector(".qr");
    const img = q.querySelector("img");
    return { kind: img ? "img" : q.querySelector("svg") ? "svg" : "none", png: img?.src.startsWith("data:image/png"), width: img?.getBoundingClientRect().width, save: !!q.querySelector("a.save[download]") };
  });
  if (context.userAgent) await page.screenshot({ path: join(ROOT, "tests", "artifacts", `embed-${/MicroMessenger/.test(context.userAgent) ? "wechat" : "phone"}.png`) });
  assert.deepEqual(code.kind === "img" ? { kind: code.kind, png: code.png, wide: code.width >= 200, save: code.save } : { kind: code.kind }, drawn);
  const scan = await s.sim("/sim/scan", { url: qr.url });
  assert.equal(scan.event, "subscribe");
  await page.waitForFunction(() => window.__followed, null, { timeout: 5000 });
  const who = await (await s.admin(`/followers/${scan.openid}`)).json();
  assert.equal(who.record.page, "/");
  assert.deepEqual(logs.filter((l) => l.type === "error" || l.type === "pageerror"), []);
  await ctx.close();
}

describe("the snippet on another company's origin", () => {
  test("the wasm is served with CORS, versioned and immutable; the loader is short-cached", async () => {
    const js = await fetch(`${s.base}/widget.js`, { headers: { origin: hostBase } });
    assert.equal(js.headers.get("access-control-allow-origin"), "*");
    assert.equal(js.headers.get("cache-control"), "public, max-age=300");
    const name = (await js.text()).match(/wasm\/widget-[0-9a-f]{16}\.wasm/)?.[0];
    assert.ok(name, "the loader names a content-hashed wasm");
    const r = await fetch(`${s.base}/${name}`, { headers: { origin: hostBase } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("access-control-allow-origin"), "*");
    assert.equal(r.headers.get("cache-control"), "public, max-age=31536000, immutable");
    const bytes = new Uint8Array(await r.arrayBuffer());
    const { createHash } = await import("node:crypto");
    assert.equal(createHash("sha256").update(bytes).digest("hex").slice(0, 16), name.slice(12, 28), "named by its content");
    const plain = await fetch(`${s.base}/widget_bg.wasm`, { headers: { origin: hostBase } });
    assert.equal(plain.headers.get("access-control-allow-origin"), "*", "the unversioned name still works");
  });
  test("desktop: code drawn, scanned, follow seen", () => embedFlow({}, { kind: "svg" }));
  test("phone browser: code drawn as a savable image, scanned, follow seen", () => embedFlow({ ...PHONE, userAgent: IPHONE }, { kind: "img", png: true, wide: true, save: true }));
  test("WeChat's in-app browser: code drawn as a long-press image, scanned, follow seen", () => embedFlow({ ...PHONE, userAgent: WECHAT }, { kind: "img", png: true, wide: true, save: false }));
});
