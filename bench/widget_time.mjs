// Time to QR in Chromium: from the moment the widget's script runs (performance mark
// "wxedge:script", set by the loader) to the first code on screen, with warm caches (the page
// loaded once before, so the wasm comes from the HTTP cache, as for a returning visitor or any
// page after the first on a site):
// - script_to_qr: a card drawn from `data-wxedge-qr` (client-side, no request);
// - click_to_qr: the follow dialog opened, a parametric code lent by the worker (POST /api/qr to
//   workerd on loopback) and drawn.
// Also the bytes a page loads for the widget (loader + glue + wasm, gzip as served).
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";
import { startStack } from "../tests/support/stack.mjs";

const runs = Number(process.argv[2] || 20);
const s = await startStack({ FOLLOW_QR_URL: "http://weixin.qq.com/r/bench" });
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"] });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p95 = (xs) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.95))];
try {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const html = `<!doctype html><html><body><div data-wxedge-qr="http://weixin.qq.com/r/bench" data-title="Follow"></div>
    <div id="slot"></div><script async src="${s.base}/widget.js" data-account="Bench" data-prompt="inline" data-target="#slot"></script></body></html>`;
  await page.route(`${s.base}/bench-page`, (r) => r.fulfill({ contentType: "text/html", body: html }));
  const bytes = {};
  page.on("response", async (r) => {
    const u = new URL(r.url());
    if (/widget\.js$|\.wasm$/.test(u.pathname)) bytes[u.pathname] = (await r.body().catch(() => Buffer.alloc(0))).length;
  });
  const once = async () => {
    await page.goto(`${s.base}/bench-page`);
    await page.waitForSelector("html[data-wxedge=ready]");
    const scriptToQr = await page.evaluate(() => performance.measure("q", "wxedge:script", "wxedge:qr").duration);
    const clickToQr = await page.evaluate(async () => {
      const shown = new Promise((r) => window.addEventListener("wxedge:qr", () => r(performance.now()), { once: true }));
      const t0 = performance.now();
      document.querySelector("#slot").shadowRoot ? document.querySelector("#slot").shadowRoot.querySelector("button").click() : document.querySelector("#slot button").click();
      return (await shown) - t0;
    });
    return { scriptToQr, clickToQr };
  };
  await once(); // cold: fills the HTTP cache
  const warm = [];
  for (let i = 0; i < runs; i++) warm.push(await once());
  const { readFileSync, readdirSync } = await import("node:fs");
  const wasmName = readdirSync("dist/widget/wasm")[0];
  const sizes = { loader_and_glue: gzipSync(readFileSync("dist/widget/widget.js"), { level: 9 }).length, wasm: gzipSync(readFileSync(`dist/widget/wasm/${wasmName}`), { level: 9 }).length };
  console.log(JSON.stringify({
    runs,
    script_to_qr_ms: { median: median(warm.map((w) => w.scriptToQr)), p95: p95(warm.map((w) => w.scriptToQr)) },
    click_to_qr_ms: { median: median(warm.map((w) => w.clickToQr)), p95: p95(warm.map((w) => w.clickToQr)) },
    page_loads_gzip_bytes: { ...sizes, total: sizes.loader_and_glue + sizes.wasm },
    fetched_raw_bytes: bytes,
  }));
  await ctx.close();
} finally {
  await browser.close();
  await s.stop();
}
