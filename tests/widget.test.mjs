// The widget in real headless Chromium against the local stack: embedding, Shadow DOM isolation,
// the accessible dialog, a scan that becomes a follow within 2 s, device-aware prompts,
// language and theme, the menu preview, the CSP fallback; and its public API from node (CORS,
// rate limit, image fallback, menu cache).
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { startStack, ROOT } from "./support/stack.mjs";

const IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";
const WECHAT = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/130.0 Mobile Safari/537.36 MicroMessenger/8.0.49.2600(0x28003133) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN";
const MENU = { button: [
  { name: "Today", type: "click", key: "TODAY" },
  { name: "Shop", sub_button: [{ name: "Teas", type: "view", url: "https://acme.example/teas" }, { name: "Gifts", type: "view", url: "https://acme.example/gifts" }] },
  { name: "Help", type: "click", key: "HELP" },
] };
const shot = (name) => join(ROOT, "tests", "artifacts", `widget-${name}.png`);

let s, browser;
before(async () => {
  s = await startStack({ ALLOWED_ORIGINS: "https://shop.example", FOLLOW_QR_URL: "http://weixin.qq.com/r/acme-static" });
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  // "pricing" is a label the owner declared (widget_scenes): it picks the welcome and the scene.
  const rules = { welcome: { scenes: { pricing: { type: "text", content: "Welcome from the pricing page: 10% off your first box." } }, widget_scenes: ["pricing"] } };
  assert.equal((await s.admin("/rules", { method: "PUT", body: rules })).status, 200);
});
after(async () => { await browser?.close(); await s?.stop(); });

/** A page in a fresh context; collects console errors and warnings. */
/** The dialog's code as drawn: an <img> (phones, WeChat) or inline SVG (desktop). */
function codeImage(page) {
  return page.evaluate(() => {
    const qr = document.querySelector("[data-wxedge=dialog]").shadowRoot.querySelector(".qr");
    const img = qr.querySelector("img"), save = qr.querySelector("a.save");
    return {
      png: !!img && img.src.startsWith("data:image/png;base64,"), src: img?.src, svg: !!qr.querySelector("svg"),
      cssWidth: img?.getBoundingClientRect().width, naturalWidth: img?.naturalWidth,
      saveDownload: save ? save.getAttribute("download") : null, saveHref: save?.href,
    };
  });
}

async function open(path, context = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 }, ...context });
  const page = await ctx.newPage();
  const logs = [];
  page.on("console", (m) => logs.push({ type: m.type(), text: m.text() }));
  page.on("pageerror", (e) => logs.push({ type: "pageerror", text: String(e) }));
  if (path) await page.goto(s.base + path);
  return { ctx, page, logs, errors: () => logs.filter((l) => l.type === "error" || l.type === "pageerror") };
}

/**
 * Serves `html` at `path` on the worker's origin (same-origin, like a host page would be).
 * A document Playwright fulfils has no address space, so Chromium's local network access
 * checks may refuse its WebSocket to 127.0.0.1 (the dialog then polls, as it would behind a
 * proxy without sockets). That one message is an artifact of the harness, never of the widget:
 * `errors()` leaves it out; the second-origin tests (tests/embed.test.mjs) serve real pages.
 */
async function routed(html, path = "/host-page", context = {}) {
  const o = await open(null, context);
  await o.page.route(s.base + path, (r) => r.fulfill({ status: 200, contentType: "text/html", body: html }));
  await o.page.goto(s.base + path);
  const all = o.errors;
  o.errors = () => all().filter((e) => !/^WebSocket connection to .* net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS$/.test(e.text));
  return o;
}

const dialogState = (page) => page.evaluate(() => {
  const host = document.querySelector("[data-wxedge=dialog]");
  if (!host) return null;
  const d = host.shadowRoot.querySelector("[role=dialog]");
  const active = host.shadowRoot.activeElement;
  return {
    modal: d.getAttribute("aria-modal"),
    title: d.querySelector("h2").textContent,
    hint: d.querySelector(".hint").textContent,
    status: d.querySelector(".status").textContent,
    active: active ? active.className || active.textContent : null,
    inside: !!active && d.contains(active),
    hasSvg: !!d.querySelector(".qr svg"),
    copy: [...d.querySelectorAll("button")].some((b) => /copy/i.test(b.textContent)),
    background: getComputedStyle(d).backgroundColor,
  };
});

describe("widget in Chromium", () => {
  test("home: one script tag, floating button in a shadow root, isolated from the page's CSS", async () => {
    const { ctx, page, errors } = await open("/");
    await page.waitForSelector("html[data-wxedge=ready]");
    await page.addStyleTag({ content: "button{background:rgb(255,0,0)!important;font-size:40px!important} .floating{position:static}" });
    const look = await page.evaluate(() => {
      const host = document.querySelector("[data-wxedge=floating]");
      const b = host.shadowRoot.querySelector("button");
      const probe = document.createElement("div");
      probe.className = "dialog backdrop";
      document.body.appendChild(probe);
      return {
        bg: getComputedStyle(b).backgroundColor,
        size: getComputedStyle(b).fontSize,
        fixed: getComputedStyle(b).position,
        leaked: getComputedStyle(probe).position,
        inLight: document.querySelectorAll("button").length,
        staticCard: document.querySelector("#follow").getAttribute("data-wxedge-state"),
      };
    });
    assert.equal(look.bg, "rgb(7, 193, 96)", "the host's !important rule does not reach in");
    assert.notEqual(look.size, "40px");
    assert.equal(look.fixed, "fixed");
    assert.equal(look.leaked, "static", "our .backdrop does not leak out");
    assert.equal(look.staticCard, "ready");
    await page.screenshot({ path: shot("home") });
    assert.deepEqual(errors(), []);
    await ctx.close();
  });

  test("the dialog: role=dialog, aria-modal, focus trapped, Esc closes, focus returns", async () => {
    const { ctx, page, errors } = await open("/");
    await page.waitForSelector("html[data-wxedge=ready]");
    await page.locator("[data-wxedge=floating] button").click();
    await page.waitForFunction(() => document.querySelector("[data-wxedge=dialog]")?.shadowRoot.querySelector(".qr svg"));
    let d = await dialogState(page);
    assert.equal(d.modal, "true");
    assert.equal(d.title, "Follow AcmeTea on WeChat");
    assert.match(d.hint, /Open WeChat on your phone/);
    assert.equal(d.active, "x", "focus starts on the close button");
    for (let i = 0; i < 5; i++) {
      await page.keyboard.press("Tab");
      assert.ok((await dialogState(page)).inside, `Tab ${i} stays inside`);
    }
    await page.keyboard.press("Shift+Tab");
    assert.ok((await dialogState(page)).inside);
    await page.screenshot({ path: shot("dialog") });
    await page.keyboard.press("Escape");
    assert.equal(await dialogState(page), null);
    const back = await page.evaluate(() => {
      const host = document.activeElement;
      return host?.getAttribute("data-wxedge") + ":" + host?.shadowRoot?.activeElement?.className;
    });
    assert.equal(back, "floating:floating primary");
    assert.deepEqual(errors(), []);
    await ctx.close();
  });

  test("pricing: a person opens the simulated phone beside the page, scans the dialog's code; the page shows the follow within 2 s, the phone the welcome, and a menu button answers", async () => {
    const rules = { welcome: { scenes: { pricing: { type: "text", content: "欢迎 Welcome from the pricing page: 10% off your first box." } }, widget_scenes: ["pricing"] },
      clicks: { TODAY: { type: "text", content: "今日茶单 Today: Longjing, Tieguanyin." } } };
    assert.equal((await s.admin("/rules", { method: "PUT", body: rules })).status, 200);
    assert.equal((await s.admin("/menu", { method: "PUT", body: MENU })).status, 200);
    const { ctx, page, errors } = await open(null);
    await page.addInitScript(() => { window.wxedge = [["on", "followed", () => { window.__followed = Date.now(); }]]; });
    const sockets = [], polls = [];
    page.on("websocket", (ws) => sockets.push(ws.url()));
    page.on("request", (r) => /\/api\/qr\/[0-9a-f]+$/.test(r.url()) && polls.push(r.url()));
    await page.goto(s.base + "/pricing");
    await page.waitForSelector("html[data-wxedge=ready]");
    // The phone first, then the dialog — and the phone stays usable above the open dialog.
    await page.locator("#sim-phone-toggle").click();
    await page.locator("[data-wxedge=banner] button.primary").click();
    await page.waitForFunction(() => document.querySelector("[data-wxedge=dialog]")?.shadowRoot.querySelector(".qr svg"));
    assert.equal((await dialogState(page)).status, "Waiting for your scan…");
    const phone = page.frameLocator("#sim-phone iframe");
    const onScreen = phone.locator("#codes button.code.screen");
    await onScreen.waitFor();
    assert.match(await onScreen.innerText(), /On the page beside: \/pricing/);
    assert.equal(await page.evaluate(() => document.querySelectorAll("[data-wxedge=dialog]").length), 1, "the dialog is still open");
    const clicked = Date.now();
    await onScreen.click(); // a real click: Playwright fails it if anything (the backdrop) covers the phone
    await page.waitForFunction(() => window.__followed, null, { timeout: 5000 });
    const seenAfter = (await page.evaluate(() => window.__followed)) - clicked;
    assert.ok(seenAfter <= 2000, `follow seen ${seenAfter} ms after the scan`);
    assert.equal((await dialogState(page)).status, "Followed — thank you!");
    // The follow was pushed over the visit's WebSocket: the dialog never polled.
    assert.equal(sockets.length, 1);
    assert.match(sockets[0], /^ws:\/\/127\.0\.0\.1:\d+\/api\/qr\/[0-9a-f]{24}\/live$/);
    assert.deepEqual(polls, []);
    // The phone: the per-scene welcome for the page's scene, then the account's menu.
    await phone.locator("#chat .row.in .bubble", { hasText: "Welcome from the pricing page" }).waitFor({ timeout: 5000 });
    await phone.locator("#menu button", { hasText: "Today" }).click();
    await phone.locator("#chat .row.in .bubble", { hasText: "今日茶单 Today: Longjing" }).waitFor({ timeout: 5000 });
    await page.screenshot({ path: shot("phone-beside-dialog") });
    await page.locator("#sim-phone").screenshot({ path: shot("sim-phone") });
    // The phone in Chinese, switched and remembered across a reload.
    await phone.locator("#lang").click();
    assert.match(await phone.locator("#codes button.code.screen").innerText(), /旁边页面上的码：\/pricing/);
    assert.equal(await phone.locator("#follow, #unfollow").locator("visible=true").innerText(), "取消关注");
    await page.locator("#sim-phone iframe").evaluate((f) => { f.src = f.src; });
    await phone.locator("#unfollow", { hasText: "取消关注" }).waitFor();
    await page.locator("#sim-phone").screenshot({ path: shot("sim-phone-zh") });
    const openid = await phone.locator("#who").inputValue();
    assert.match(openid, /^o/);
    const inbox = await (await fetch(`${s.simBase}/sim/inbox?openid=${openid}`)).json();
    assert.deepEqual(inbox.messages.map((m) => m.content), ["欢迎 Welcome from the pricing page: 10% off your first box.", "今日茶单 Today: Longjing, Tieguanyin."]);
    const who = await (await s.admin(`/followers/${openid}`)).json();
    assert.equal(who.record.page, "/pricing");
    assert.equal(who.record.scene, "pricing");
    const funnel = await (await s.admin("/funnel?days=1")).json();
    const row = Object.values(funnel)[0]["/pricing"].pricing;
    assert.ok(row[0] >= 1 && row[1] >= 1 && row[3] === 1, `impressions, shown, scanned, followed: ${row}`);
    assert.deepEqual(errors(), []);
    await ctx.close();
  });

  test("the queue works before the script loads; a second copy of the snippet does nothing", async () => {
    const html = `<!doctype html><html lang="en"><body><div id="slot"></div>
      <script>window.wxedge = window.wxedge || []; wxedge.push(["prompt", "inline", "#slot"]); wxedge.push(["config", {account: "QueueCo"}]);
      wxedge.push(["on", "open", function () { window.__opened = (window.__opened || 0) + 1; }]);</script>
      <script async src="/widget.js" data-prompt="none"></script><script async src="/widget.js" data-prompt="none"></script></body></html>`;
    const { ctx, page, errors } = await routed(html);
    await page.waitForSelector("html[data-wxedge=ready]");
    const card = await page.evaluate(() => document.querySelector("#slot").shadowRoot.querySelector(".card").textContent);
    assert.match(card, /Follow QueueCo on WeChat/);
    assert.equal(await page.evaluate(() => document.querySelectorAll("[data-wxedge=floating],[data-wxedge=banner]").length), 0);
    await page.evaluate(() => window.wxedge.push(["open"]));
    await page.waitForFunction(() => document.querySelector("[data-wxedge=dialog]"));
    assert.equal(await page.evaluate(() => window.__opened), 1);
    assert.equal(await page.evaluate(() => document.querySelectorAll("[data-wxedge=dialog]").length), 1);
    assert.deepEqual(errors(), []);
    await ctx.close();
  });

  test("a phone browser: save-and-scan guidance and a copy button that says it copied", async () => {
    const { ctx, page } = await open(null, { userAgent: IPHONE, viewport: { width: 390, height: 800 }, isMobile: true, hasTouch: true });
    await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: s.base });
    await page.goto(s.base + "/contact");
    await page.waitForSelector("html[data-wxedge=ready]");
    await page.locator("#follow-card button").click();
    await page.waitForFunction(() => document.querySelector("[data-wxedge=dialog]")?.shadowRoot.querySelector(".qr img")?.naturalWidth > 0);
    const d = await dialogState(page);
    assert.match(d.hint, /screenshot/);
    assert.ok(d.copy);
    const code = await codeImage(page);
    assert.ok(code.png && code.cssWidth >= 200 && code.naturalWidth >= 200, JSON.stringify(code));
    assert.deepEqual([code.saveDownload, code.saveHref === code.src], ["wechat-follow-code.png", true], "a link that saves the image for WeChat's album scan");
    await page.locator("[data-wxedge=dialog] button", { hasText: "Copy" }).click();
    await page.waitForFunction(() => /Copied/.test(document.querySelector("[data-wxedge=dialog]").shadowRoot.querySelector("[aria-live]:not(.status)")?.textContent));
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), "AcmeTea");
    await page.screenshot({ path: shot("phone") });
    await ctx.close();
  });

  test("WeChat's in-app browser: long-press guidance, no copy step", async () => {
    const { ctx, page } = await open(null, { userAgent: WECHAT, viewport: { width: 390, height: 800 }, isMobile: true });
    await page.goto(s.base + "/contact");
    await page.waitForSelector("html[data-wxedge=ready]");
    await page.locator("#follow-card button").click();
    await page.waitForFunction(() => document.querySelector("[data-wxedge=dialog]")?.shadowRoot.querySelector(".qr img")?.naturalWidth > 0);
    const d = await dialogState(page);
    assert.match(d.hint, /Long-press/);
    assert.equal(d.copy, false);
    // WeChat's long press reads only <img> codes: a PNG image at least 200 CSS px, no inline SVG.
    const code = await codeImage(page);
    assert.ok(code.png && code.cssWidth >= 200 && code.naturalWidth >= 200 && !code.svg, JSON.stringify(code));
    assert.equal(code.saveDownload, null, "no save step inside WeChat");
    await ctx.close();
  });

  test("Chinese text and the dark theme", async () => {
    const html = `<!doctype html><html lang="zh-CN"><body><script async src="/widget.js" data-account="AcmeTea" data-prompt="floating"></script></body></html>`;
    const { ctx, page } = await routed(html, "/zh-page", { colorScheme: "dark" });
    await page.waitForSelector("html[data-wxedge=ready]");
    assert.match(await page.locator("[data-wxedge=floating] button").innerText(), /关注公众号/);
    await page.locator("[data-wxedge=floating] button").click();
    await page.waitForFunction(() => document.querySelector("[data-wxedge=dialog]")?.shadowRoot.querySelector(".qr svg"));
    const d = await dialogState(page);
    assert.equal(d.title, "关注「AcmeTea」公众号");
    assert.equal(d.background, "rgb(31, 31, 31)");
    await page.screenshot({ path: shot("zh-dark") });
    await ctx.close();
  });

  test("static mode draws the account's ordinary code and asks the worker for nothing", async () => {
    const html = `<!doctype html><html lang="en"><body><script async src="/widget.js" data-mode="static" data-qr-url="http://weixin.qq.com/r/acme-static" data-prompt="floating"></script></body></html>`;
    const { ctx, page } = await routed(html, "/static-page");
    const calls = [];
    page.on("request", (r) => r.url().includes("/api/qr") && calls.push(r.url()));
    await page.waitForSelector("html[data-wxedge=ready]");
    await page.locator("[data-wxedge=floating] button").click();
    await page.waitForFunction(() => document.querySelector("[data-wxedge=dialog]")?.shadowRoot.querySelector(".qr svg"));
    assert.deepEqual(calls, []);
    assert.equal((await dialogState(page)).status, "Waiting for your scan…");
    await ctx.close();
  });

  test("menu preview: the published menu on a phone mock; a tap opens the sub-menu", async () => {
    assert.equal((await s.admin("/menu", { method: "PUT", body: MENU })).status, 200);
    const { ctx, page, errors } = await open("/contact");
    await page.waitForFunction(() => document.querySelector("#menu")?.shadowRoot?.querySelectorAll(".bar > div").length === 3);
    await page.locator("#menu .bar button", { hasText: "Shop" }).click();
    const subs = await page.evaluate(() => [...document.querySelector("#menu").shadowRoot.querySelectorAll(".sub:not([hidden]) button")].map((b) => b.textContent));
    assert.deepEqual(subs, ["Teas", "Gifts"]);
    await page.locator("#menu .sub button", { hasText: "Teas" }).click();
    assert.match(await page.locator("#menu .toast").innerText(), /Opens https:\/\/acme.example\/teas/);
    const openSubs = () => page.evaluate(() => document.querySelector("#menu").shadowRoot.querySelectorAll(".sub:not([hidden])").length);
    assert.equal(await openSubs(), 0, "a tap on a leaf closes its sub-menu");
    await page.screenshot({ path: shot("menu") });
    // The console redraws its preview on every edit: one tap still opens the sub-menu once (a
    // listener per drawing would open and close it again).
    await page.evaluate(() => {
      const menu = { button: [{ name: "More", sub_button: [{ name: "FAQ", type: "click", key: "FAQ" }] }] };
      for (let i = 0; i < 3; i++) window.wxedge.push(["menu", "#menu", menu]);
    });
    await page.locator("#menu .bar button", { hasText: "More" }).click();
    assert.equal(await openSubs(), 1);
    assert.equal(await page.locator("#menu .bar button", { hasText: "More" }).getAttribute("aria-expanded"), "true");
    await page.locator("#menu .bar button", { hasText: "More" }).click();
    assert.equal(await openSubs(), 0);
    assert.deepEqual(errors(), []);
    await ctx.close();
  });

  test("a click inside the dialog keeps it; the backdrop closes it; a dismissed banner stays away", async () => {
    const html = `<!doctype html><html lang="en"><body><script async src="/widget.js" data-account="AcmeTea" data-prompt="banner"></script></body></html>`;
    const { ctx, page, errors } = await routed(html, "/banner-page");
    await page.waitForSelector("html[data-wxedge=ready]");
    await page.locator("[data-wxedge=banner] button.primary").click();
    await page.waitForFunction(() => document.querySelector("[data-wxedge=dialog]")?.shadowRoot.querySelector(".qr svg"));
    await page.locator("[data-wxedge=dialog] h2").click();
    await page.locator("[data-wxedge=dialog] .qr").click();
    assert.ok(await dialogState(page), "clicks on the title and the code keep the dialog open");
    await page.mouse.click(8, 8);
    assert.equal(await dialogState(page), null, "a click on the backdrop closes it");
    await page.locator("[data-wxedge=banner] button.dismiss").click();
    assert.equal(await page.locator("[data-wxedge=banner]").count(), 0);
    await page.reload();
    await page.waitForSelector("html[data-wxedge=ready]");
    assert.equal(await page.locator("[data-wxedge=banner]").count(), 0, "dismissed for the session");
    assert.deepEqual(errors(), []);
    await ctx.close();
  });

  test("markup in the account name and menu labels stays text", async () => {
    const evil = `<img src=x onerror="window.pwned=1">`;
    const html = `<!doctype html><html lang="en"><body><div id="card"></div><div id="menu"></div>
<script async src="/widget.js" data-account='${evil}' data-prompt="inline" data-target="#card"></script></body></html>`;
    const { ctx, page } = await routed(html, "/evil-page");
    await page.waitForSelector("html[data-wxedge=ready]");
    await page.evaluate((evil) => window.wxedge.push(["menu", "#menu", { button: [{ name: evil, type: "view", url: evil }] }]), evil);
    await page.locator("#card button").click();
    await page.waitForFunction(() => document.querySelector("[data-wxedge=dialog]")?.shadowRoot.querySelector(".qr svg"));
    const inDialog = await page.evaluate(() => {
      const root = document.querySelector("[data-wxedge=dialog]").shadowRoot;
      return { imgs: root.querySelectorAll("img").length, title: root.querySelector("h2").textContent };
    });
    await page.keyboard.press("Escape");
    await page.locator("#menu .bar button").click();
    const seen = await page.evaluate(() => ({
      pwned: window.pwned,
      imgs: ["#card", "#menu"].map((sel) => document.querySelector(sel).shadowRoot.querySelectorAll("img").length),
      toast: document.querySelector("#menu").shadowRoot.querySelector(".toast").textContent,
    }));
    assert.deepEqual(inDialog, { imgs: 0, title: `Follow ${evil} on WeChat` });
    assert.equal(seen.pwned, undefined);
    assert.deepEqual(seen.imgs, [0, 0]);
    assert.equal(seen.toast, `Opens ${evil}`);
    await ctx.close();
  });

  test("a page whose CSP blocks WebAssembly gets the image fallback and one clear console line", async () => {
    const { ctx, page, logs } = await open("/csp");
    await page.waitForSelector("html[data-wxedge=fallback]");
    const images = [];
    page.on("request", (r) => r.url().includes("/api/qr.svg") && images.push(r.url()));
    assert.equal(await page.evaluate(() => document.querySelector("#follow-card").shadowRoot.querySelector("img")), null, "no code spent until asked");
    await page.locator("#follow-card button", { hasText: "Show the QR code" }).click();
    await page.waitForFunction(() => document.querySelector("#follow-card").shadowRoot.querySelector("img")?.naturalWidth > 0);
    assert.equal(images.length, 1);
    assert.match(images[0], /\/api\/qr\.svg\?visit=[0-9a-f]{24}$/, "the image draws the visit the page asked for");
    const lines = logs.filter((l) => /wasm-unsafe-eval/.test(l.text));
    assert.equal(lines.length, 1, JSON.stringify(logs));
    assert.equal(lines[0].type, "warning");
    await page.screenshot({ path: shot("csp") });
    await ctx.close();
  });
});

describe("widget API", () => {
  test("CORS: allowed origins get their origin echoed, others 403", async () => {
    const ok = await fetch(`${s.base}/api/menu`, { headers: { origin: "https://shop.example" } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("access-control-allow-origin"), "https://shop.example");
    const pre = await fetch(`${s.base}/api/qr`, { method: "OPTIONS", headers: { origin: "https://shop.example", "access-control-request-method": "POST" } });
    assert.equal(pre.status, 204);
    const evil = await fetch(`${s.base}/api/qr`, { method: "POST", headers: { origin: "https://evil.example" }, body: "{}" });
    assert.equal(evil.status, 403);
    assert.equal((await evil.json()).error, "origin_not_allowed");
    assert.equal(evil.headers.get("access-control-allow-origin"), null);
  });

  test("funnel events: counted when well formed, 400 otherwise", async () => {
    const send = (body) => fetch(`${s.base}/api/events`, { method: "POST", headers: { "content-type": "text/plain" }, body });
    assert.equal((await send(JSON.stringify({ events: [{ step: "impression", page: "/api-test", scene: "t" }] }))).status, 204);
    assert.equal((await send(JSON.stringify({ events: [{ step: "followed", page: "/" }] }))).status, 400, "follows are counted by callbacks only");
    assert.equal((await send("{not json")).status, 400);
    assert.equal((await send("x".repeat(5000))).status, 413);
    const funnel = await (await s.admin("/funnel?days=1")).json();
    assert.equal(Object.values(funnel)[0]["/api-test"].t[0], 1);
    // The limit is per calendar minute: keep the burst inside one.
    const intoMinute = (Date.now() / 1000) % 60;
    if (intoMinute > 50) await new Promise((r) => setTimeout(r, (61 - intoMinute) * 1000));
    const burst = [];
    for (let i = 0; i < 125; i++) {
      burst.push((await fetch(`${s.base}/api/events`, { method: "POST", headers: { "cf-connecting-ip": "203.0.113.77" }, body: JSON.stringify({ events: [{ step: "impression", page: "/burst", scene: "b" }] }) })).status);
    }
    assert.equal(burst.filter((x) => x === 204).length, 120);
    assert.equal(burst.at(-1), 429, "120 events a minute per address");
  });

  test("the image fallback draws a visit's code; unknown visits are 404", async () => {
    const lent = await (await fetch(`${s.base}/api/qr`, { method: "POST", headers: { "cf-connecting-ip": "198.51.100.7" }, body: JSON.stringify({ page: "/csp", scene: "csp-demo" }) })).json();
    const visit = lent.visit;
    assert.match(visit, /^[0-9a-f]{24}$/);
    const r = await fetch(`${s.base}/api/qr.svg?visit=${visit}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "image/svg+xml");
    const svg = await r.text();
    assert.match(svg, /^<svg[^>]+viewBox="0 0 \d+ \d+"/);
    const ordinary = await (await fetch(`${s.base}/api/qr.svg`)).text();
    assert.notEqual(svg, ordinary, "the visit's own code, not the ordinary one");
    assert.equal((await (await fetch(`${s.base}/api/qr/${visit}`)).json()).state, "waiting");
    assert.equal((await fetch(`${s.base}/api/qr/0123456789abcdef01234567`)).status, 404);
    assert.equal((await fetch(`${s.base}/api/qr/not-hex`)).status, 404);
  });

  test("one address gets 10 codes a minute, then the account's ordinary code", async () => {
    const intoMinute = (Date.now() / 1000) % 60;
    if (intoMinute > 50) await new Promise((r) => setTimeout(r, (61 - intoMinute) * 1000));
    const ask = () => fetch(`${s.base}/api/qr`, { method: "POST", headers: { "cf-connecting-ip": "203.0.113.9" }, body: JSON.stringify({ page: "/burst", scene: "burst" }) });
    const answers = [];
    for (let i = 0; i < 12; i++) answers.push(await ask());
    const statuses = answers.map((r) => r.status);
    assert.deepEqual(statuses, Array(12).fill(200), JSON.stringify(statuses));
    const bodies = await Promise.all(answers.map((r) => r.json()));
    assert.equal(new Set(bodies.slice(0, 10).map((v) => v.url)).size, 10, "a code is lent to one visit at a time");
    assert.ok(bodies.slice(0, 10).every((v) => v.visit && !v.static));
    assert.deepEqual(bodies[10], { static: true, url: "http://weixin.qq.com/r/acme-static", why: "rate_limited" }, "limited, never a blank: the ordinary code");
    const other = await fetch(`${s.base}/api/qr`, { method: "POST", headers: { "cf-connecting-ip": "203.0.113.10" }, body: JSON.stringify({ page: "/", scene: "x" }) });
    assert.equal(other.status, 200, "other visitors are not affected");
  });

  test("static mode on request, and the menu cache follows a publish", async () => {
    const st = await (await fetch(`${s.base}/api/qr`, { method: "POST", body: JSON.stringify({ static: true }) })).json();
    assert.deepEqual(st, { static: true, url: "http://weixin.qq.com/r/acme-static", why: "asked" });
    await s.admin("/menu", { method: "PUT", body: { button: [{ name: "Only", type: "click", key: "ONLY" }] } });
    const m = await (await fetch(`${s.base}/api/menu`)).json();
    assert.equal(m.menu.button[0].name, "Only");
  });
});
