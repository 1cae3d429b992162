// The owner's console in Chromium against the local stack: log in (and a wrong token refused),
// edit and publish a menu that the simulator then holds, auto-replies with "try it", import
// followers and see the charts, plan and send a broadcast and see the quota change, embed.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { startStack, ROOT } from "./support/stack.mjs";

const shot = (name) => join(ROOT, "tests", "artifacts", `console-${name}.png`);

describe("console", () => {
  let s, browser, ctx, page;
  const errors = [];
  before(async () => {
    s = await startStack({}, { followers: 12 });
    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"] });
    ctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: s.base });
    page = await ctx.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    // Refusals the console shows as notices (401 wrong token, 422 invalid rules) are also logged by
    // the browser as failed loads; anything else is a bug.
    page.on("console", (m) => m.type() === "error" && !/status of (401|422)/.test(m.text()) && errors.push(m.text()));
  });
  after(async () => { await browser?.close(); await s?.stop(); });

  const notice = () => page.locator("#notice").innerText();

  test("a wrong token is refused; the right one unlocks the console and stays out of the URL", async () => {
    await page.goto(s.base + "/console/");
    await page.fill("#token", "not-the-admin-token");
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#notice:not([hidden])");
    assert.match(await notice(), /refused/);
    assert.ok(await page.isVisible("#login"));
    assert.equal(await page.evaluate(() => sessionStorage.getItem("wxedge-admin-token")), null);
    await page.screenshot({ path: shot("login-refused") });
    await page.fill("#token", s.config.ADMIN_TOKEN);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#tabs:not([hidden])");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("wxedge-admin-token")), s.config.ADMIN_TOKEN);
    assert.ok(!page.url().includes(s.config.ADMIN_TOKEN));
    assert.ok(await page.isHidden("#login"));
  });

  test("menu: limits enforced as you type, live preview, publish, the simulator holds it", async () => {
    await page.goto(s.base + "/console/#menu");
    await page.waitForSelector("#menu[data-loaded]:not([hidden])");
    await page.click("#menu-add");
    const name = page.locator('[data-path="button[0].name"]');
    await name.fill("Products and services");
    await page.waitForSelector('[data-path="button[0].name"][aria-invalid=true]');
    assert.match(await page.locator("#menu-problems").innerText(), /"Products and services": the name is 21 bytes/);
    assert.ok(await page.locator("#menu-publish").isDisabled());
    await name.fill("Today");
    await page.locator('[data-path="button[0].key"]').fill("TODAY");
    await page.click("#menu-add");
    await page.locator('[data-path="button[1].name"]').fill("More");
    await page.selectOption('[data-path="button[1].type"]', "submenu");
    await page.locator('[data-path="button[1].sub_button[0].name"]').fill("Site");
    await page.selectOption('[data-path="button[1].sub_button[0].type"]', "view");
    await page.locator('[data-path="button[1].sub_button[0].url"]').fill("https://acme.example/");
    await page.waitForFunction(() => !document.querySelector("#menu-publish").disabled);
    await page.waitForFunction(() => document.querySelector("#menu-preview").shadowRoot?.querySelectorAll(".bar > div").length === 2);
    await page.locator("#menu-preview .bar button", { hasText: "More" }).click();
    assert.equal(await page.locator("#menu-preview .sub button").innerText(), "Site");
    await page.screenshot({ path: shot("menu") });
    await page.click("#menu-publish");
    await page.waitForFunction(() => /Published/.test(document.querySelector("#notice").textContent));
    const held = (await s.sim("/sim/status")).menu.menu.button;
    assert.deepEqual(held.map((b) => b.name), ["Today", "More"]);
    assert.equal(held[1].sub_button[0].url, "https://acme.example/");
  });

  test("auto-replies: saved rules answer the try-it box; an invalid entry is named", async () => {
    await page.goto(s.base + "/console/#replies");
    await page.waitForSelector("#replies[data-loaded]:not([hidden])");
    await page.fill("#welcome-default", "Hello from the console");
    await page.click("#keyword-add");
    const row = page.locator("#keywords .row").last();
    await row.locator("input").first().fill("hours");
    await row.locator("textarea").fill("We are open 9 to 5");
    await page.click("#rules-form button[type=submit]");
    await page.waitForFunction(() => /Saved/.test(document.querySelector("#notice").textContent));
    await page.selectOption("#try-kind", "text");
    await page.fill("#try-value", "Hours");
    await page.click("#try-form button[type=submit]");
    await page.waitForFunction(() => /9 to 5/.test(document.querySelector("#try-result").textContent));
    await page.selectOption("#try-kind", "subscribe");
    await page.fill("#try-value", "");
    await page.click("#try-form button[type=submit]");
    await page.waitForFunction(() => /Hello from the console/.test(document.querySelector("#try-result").textContent));
    await page.click("#keyword-add"); // an empty pattern
    await page.click("#rules-form button[type=submit]");
    await page.waitForFunction(() => /keywords\[1\]\.pattern/.test(document.querySelector("#notice").textContent));
    await page.screenshot({ path: shot("replies") });
    await page.locator("#keywords .row").last().locator(".remove").click();
  });

  test("followers: import from WeChat, charts drawn", async () => {
    await s.sim("/sim/follow", {}); // one follow through a callback today
    await page.goto(s.base + "/console/#followers");
    await page.waitForSelector("#followers[data-loaded]:not([hidden])");
    await page.click("#import");
    await page.waitForFunction(() => /^Done: \d+ followers/.test(document.querySelector("#import-status").textContent));
    assert.match(await page.locator("#import-status").innerText(), /Done: 13 followers/);
    await page.waitForFunction(() => /4 left · followers: 13$/.test(document.querySelector("#quota-chart-2 rect title")?.textContent));
    assert.ok(await page.locator("#daily-chart rect").count() > 0);
    assert.match(await page.locator("#scene-chart svg").getAttribute("aria-label"), /Follows by scene/);
    await page.screenshot({ path: shot("followers"), fullPage: true });
  });

  test("broadcasts: plan, send with confirmation, history and quota change", async () => {
    await page.goto(s.base + "/console/#broadcasts");
    await page.waitForSelector("#broadcasts[data-loaded]:not([hidden])");
    await page.fill("#msg-text", "November harvest is in");
    await page.click("#plan-form button[type=submit]");
    await page.waitForSelector("#plan dl");
    assert.match(await page.locator("#plan").innerText(), /Eligible\s+13/);
    await page.click("#send");
    assert.match(await page.locator("#confirm-text").innerText(), /To 13 followers/);
    await page.screenshot({ path: shot("broadcast-confirm") });
    await page.click("#confirm-send");
    await page.waitForFunction(() => /Broadcast .* sent to 13 followers/.test(document.querySelector("#notice").textContent));
    await page.waitForSelector("#history tbody tr");
    assert.match(await page.locator("#history tbody tr").first().innerText(), /all followers/);
    const title = await page.locator("#quota-chart rect title").nth(1).textContent();
    assert.match(title, /3 left · followers: 13/);
    assert.deepEqual((await (await s.admin("/quota")).json()).left, [0, 0, 0, 13, 0]);
    await page.screenshot({ path: shot("broadcasts"), fullPage: true });
  });

  test("notifications: the template's fields with their rules, a live card preview, a field over its limit named, a test sent and delivered", async () => {
    const who = (await s.sim("/sim/follow", {})).openid;
    await page.goto(s.base + "/console/#notifications");
    await page.waitForSelector("#notifications[data-loaded]:not([hidden])");
    await page.selectOption("#n-template", { label: "订单发货通知" });
    const field = (k) => page.locator(`#n-fields input[data-key="${k}"]`);
    await field("thing1").fill("一".repeat(21));
    assert.equal(await page.locator("#n-fields label:has(input[data-key=thing1]) .count").innerText(), "21/20");
    assert.ok(await page.locator("#n-fields label:has(input[data-key=thing1]) .count.over").count(), "marked over");
    for (const [k, v] of [["thing2", "顺丰速运"], ["character_string3", "SF1234567890"], ["time4", "2026-12-03 15:01"], ["phrase5", "已发货"]]) await field(k).fill(v);
    await page.fill("#n-url", "https://shop.example.com/orders/1001");
    await page.fill("#n-openid", who);
    assert.match(await page.locator("#n-preview").innerText(), /订单发货通知[\s\S]*快递单号\s*SF1234567890[\s\S]*View details/);
    await page.click("#n-send");
    await page.waitForSelector("#n-result .problems");
    assert.match(await page.locator("#n-result").innerText(), /data\.thing1: at most 20 characters, got 21/);
    assert.equal(await field("thing1").getAttribute("aria-invalid"), "true", "the field WeChat would refuse is marked");
    await field("thing1").fill("羊毛围巾 × 2");
    await page.screenshot({ path: shot("notifications") });
    await page.click("#n-send");
    await page.waitForSelector("#n-result .status-sent");
    await page.waitForFunction(() => [...document.querySelectorAll("#n-history tbody tr")].some((r) => r.innerText.includes("delivered")), null, { timeout: 8000 });
    assert.ok((await s.sim(`/sim/inbox?openid=${who}`)).messages.some((m) => m.kind === "notification" && m.content.title === "订单发货通知"));
    assert.match(await page.locator("#n-budget").innerText(), /Today: 1 sent, 99999 of 100000 left/);
  });

  test("inbox: a follower's message appears, the owner reads and replies with the window shown, the follower sees typing and the reply; a second console sees it too", async () => {
    const who = (await s.sim("/sim/follow", {})).openid;
    await s.sim("/sim/text", { openid: who, content: "我的订单什么时候发货？" });
    await page.goto(s.base + "/console/#inbox");
    await page.waitForSelector("#inbox[data-loaded]:not([hidden])", { timeout: 8000 }).catch(async (e) => {
      throw new Error(e.message + " " + JSON.stringify(await page.evaluate(() => ({ url: location.href, hidden: document.querySelector("#inbox").hidden, loaded: document.querySelector("#inbox").hasAttribute("data-loaded"), notice: document.querySelector("#notice").textContent }))));
    });
    const row = page.locator(`#threads button[data-openid="${who}"]`);
    await row.waitFor({ timeout: 5000 });
    assert.match(await row.innerText(), /2/, "two unread: the follow and the message");
    await row.click();
    await page.waitForFunction(() => /我的订单什么时候发货/.test(document.querySelector("#entries")?.innerText || ""));
    assert.match(await page.locator("#thread-window").innerText(), /window open until .*message\(s\) left/);
    // A second console (another tab: the token is per tab) open at the same time.
    const second = await ctx.newPage();
    await second.goto(s.base + "/console/#inbox");
    await second.fill("#token", s.config.ADMIN_TOKEN);
    await second.click("#login-form button[type=submit]");
    await second.waitForSelector(`#threads button[data-openid="${who}"]`);
    await second.locator(`#threads button[data-openid="${who}"]`).click();
    await page.fill("#reply-text", "今天下午发");
    for (let i = 0; i < 30 && !(await s.sim(`/sim/phone?openid=${who}`)).person.typing; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal((await s.sim(`/sim/phone?openid=${who}`)).person.typing, true, "the follower sees typing…");
    await page.click("#reply-send");
    await page.waitForFunction(() => [...document.querySelectorAll("#entries li.out")].some((l) => l.innerText.includes("今天下午发")));
    assert.ok((await s.sim(`/sim/inbox?openid=${who}`)).messages.some((m) => m.kind === "cs" && JSON.stringify(m.content).includes("今天下午发")));
    await second.waitForFunction(() => [...document.querySelectorAll("#entries li.out")].some((l) => l.innerText.includes("今天下午发")), null, { timeout: 6000 });
    await page.screenshot({ path: shot("inbox") });
    // The live channel drops (a network change, a deploy): it comes back by itself, and the
    // follower's next message shows without a reload, well before the 10 s fallback poll.
    await page.waitForSelector("#inbox[data-live=open]");
    await page.evaluate(() => window.__wxedgeInboxLive().close());
    await page.waitForSelector("#inbox[data-live=closed]");
    await page.waitForSelector("#inbox[data-live=open]", { timeout: 5000 });
    const sent = Date.now();
    await s.sim("/sim/text", { openid: who, content: "好的，谢谢" });
    await page.waitForFunction(() => /好的，谢谢/.test(document.querySelector("#entries")?.innerText || ""), null, { timeout: 4000 });
    assert.ok(Date.now() - sent < 3000, `live, not polled: ${Date.now() - sent} ms`);
    await second.close();
  });

  test("embed: the snippet follows the choices and the preview runs it", async () => {
    await page.goto(s.base + "/console/#embed");
    await page.waitForSelector("#embed:not([hidden])");
    await page.selectOption("#e-prompt", "inline");
    const snippet = await page.inputValue("#e-snippet");
    assert.match(snippet, /data-prompt="inline"/);
    assert.match(snippet, /data-target="#follow-card"/);
    const frame = page.frameLocator("#e-preview");
    await frame.locator("#follow-card .card").waitFor();
    assert.match(await frame.locator("#follow-card .card").innerText(), /Follow AcmeTea on WeChat/);
    await page.click("#e-copy");
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), snippet);
    await page.screenshot({ path: shot("embed") });
    assert.deepEqual(errors, []);
  });

  test("a zh-CN browser gets the Chinese console: pages, notices and errors; switchable and remembered", async () => {
    const zh = await browser.newContext({ locale: "zh-CN", viewport: { width: 1200, height: 900 } });
    const p = await zh.newPage();
    p.on("pageerror", (e) => errors.push(String(e)));
    await p.goto(s.base + "/console/");
    await p.waitForFunction(() => document.documentElement.lang === "zh-CN");
    assert.equal(await p.locator("#login h1").innerText(), "登录");
    await p.fill("#token", "not-the-admin-token");
    await p.click("#login-form button[type=submit]");
    await p.waitForSelector("#notice:not([hidden])");
    assert.equal(await p.locator("#notice").innerText(), "令牌被拒绝：这不是该 worker 的 ADMIN_TOKEN。");
    await p.fill("#token", s.config.ADMIN_TOKEN);
    await p.click("#login-form button[type=submit]");
    await p.waitForSelector("#tabs:not([hidden])");
    assert.match(await p.locator("#tabs").innerText(), /菜单\s*自动回复\s*群发\s*模板通知\s*客服消息/);
    await p.goto(s.base + "/console/#notifications");
    await p.waitForSelector("#notifications[data-loaded]:not([hidden])");
    assert.equal(await p.locator("#notifications h1").innerText(), "模板通知");
    await p.fill("#n-openid", "oSomeone");
    await p.selectOption("#n-template", { label: "订单发货通知" });
    for (const [k, v] of [["thing1", "一".repeat(21)], ["thing2", "顺丰速运"], ["character_string3", "SF1"], ["time4", "2026-12-03 15:01"], ["phrase5", "已发货"]]) await p.fill(`#n-fields input[data-key="${k}"]`, v);
    await p.click("#n-send");
    await p.waitForSelector("#n-result .problems");
    assert.match(await p.locator("#n-result").innerText(), /data\.thing1: at most 20 characters/, "the server's detail is kept");
    await p.screenshot({ path: shot("zh-notifications") });
    await p.selectOption("#lang", "en");
    assert.equal(await p.locator("#notifications h1").innerText(), "Notifications");
    await p.reload();
    await p.waitForSelector("#notifications[data-loaded]:not([hidden])");
    assert.equal(await p.locator("#notifications h1").innerText(), "Notifications", "the choice is remembered");
    await p.selectOption("#lang", "zh-CN");
    assert.equal(await p.locator("#notifications h1").innerText(), "模板通知");
    await zh.close();
  });
});
