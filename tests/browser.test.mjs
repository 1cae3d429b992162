// The demo page in real headless Chromium: the widget loads its wasm and draws the QR code.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { startStack, ROOT } from "./support/stack.mjs";

let s, browser;
before(async () => {
  s = await startStack();
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    // Playwright gives every launch a fresh, empty profile directory of its own.
  });
});
after(async () => { await browser?.close(); await s?.stop(); });

test("demo page renders the follow QR code inside a shadow root", async () => {
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  await page.goto(s.base + "/");
  await page.waitForSelector("#follow[data-wxedge-state=ready]", { timeout: 10_000 });
  const info = await page.evaluate(() => {
    const host = document.querySelector("#follow");
    const svg = host.shadowRoot.querySelector("svg");
    return {
      viewBox: svg.getAttribute("viewBox"),
      modules: svg.querySelector("path").getAttribute("d").split("M").length - 1,
      label: svg.getAttribute("aria-label"),
      leaked: document.querySelectorAll("svg").length, // must stay inside the shadow root
      width: svg.getBoundingClientRect().width,
    };
  });
  assert.match(info.viewBox, /^0 0 \d+ \d+$/);
  assert.ok(info.modules > 100, `QR has ${info.modules} dark modules`);
  assert.equal(info.label, "Follow Acme Tea on WeChat");
  assert.equal(info.leaked, 0);
  assert.ok(info.width >= 150, `QR drawn ${info.width}px wide`);
  await page.screenshot({ path: join(ROOT, "tests", "artifacts", "demo-desktop.png") });
  assert.deepEqual(errors, []);
});
