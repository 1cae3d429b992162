// Auto-reply rules through the admin API and the callback, and the simulator's push command.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { startStack, signedQuery, subscribeXml, xmlField, SIM, AES_KEY } from "./support/stack.mjs";

const RULES = {
  welcome: {
    default: { type: "text", content: "Hello from the rules" },
    scenes: { pricing: { type: "text", content: "You scanned on the pricing page: 10% off today." } },
  },
  keywords: [
    { match: "contains", pattern: "price", reply: { type: "text", content: "See /pricing" } },
    { match: "exact", pattern: "help", reply: { type: "news", articles: [{ title: "Help centre", url: "https://example.com/help" }] }, priority: 10 },
  ],
  clicks: { MENU_CONTACT: { type: "text", content: "Call us: 400-000-0000" } },
  default: { type: "transfer_customer_service" },
};

describe("rules", () => {
  let s;
  before(async () => { s = await startStack(); });
  after(async () => { await s?.stop(); });
  const admin = (path, init = {}) => fetch(`${s.base}/api/admin${path}`, {
    ...init, headers: { authorization: `Bearer ${s.config.ADMIN_TOKEN}`, "content-type": "application/json", ...(init.headers || {}) },
  });
  const push = async (xml) => (await fetch(`${s.base}/wechat?${signedQuery(s.config.WECHAT_TOKEN)}`, { method: "POST", body: xml })).text();
  const text = (content, id) => `<xml><ToUserName>gh_test</ToUserName><FromUserName>oK</FromUserName><CreateTime>1700001000</CreateTime><MsgType>text</MsgType><Content><![CDATA[${content}]]></Content><MsgId>${id}</MsgId></xml>`;

  test("the admin API refuses a missing or wrong token", async () => {
    assert.equal((await fetch(`${s.base}/api/admin/rules`)).status, 401);
    const wrong = await fetch(`${s.base}/api/admin/rules`, { headers: { authorization: "Bearer nope" } });
    assert.equal(wrong.status, 401);
    assert.equal((await wrong.json()).error, "unauthorized");
  });

  test("an invalid document is refused with the offending entry named, and nothing changes", async () => {
    const bad = structuredClone(RULES);
    bad.keywords[1].reply.articles.push({ title: "second" }); // 2 articles in reply to a message: 45008
    const r = await admin("/rules", { method: "PUT", body: JSON.stringify(bad) });
    assert.equal(r.status, 422);
    assert.match((await r.json()).message, /keywords\[1\]\.reply/);
    assert.deepEqual(await (await admin("/rules")).json(), { welcome: { default: null, scenes: {} }, keywords: [], clicks: {}, default: null });
  });

  test("stored rules drive replies: scene welcome, keywords by priority, clicks, default", async () => {
    const put = await admin("/rules", { method: "PUT", body: JSON.stringify(RULES) });
    assert.equal(put.status, 200, await put.clone().text());
    const pricing = await push(subscribeXml({ from: "oP", scene: "pricing", createTime: 1700001001 }));
    assert.equal(xmlField(pricing, "Content"), RULES.welcome.scenes.pricing.content);
    const plain = await push(subscribeXml({ from: "oQ", createTime: 1700001002 }));
    assert.equal(xmlField(plain, "Content"), "Hello from the rules");
    const help = await push(text(" HELP ", 1));
    assert.equal(xmlField(help, "MsgType"), "news");
    assert.equal(xmlField(help, "Title"), "Help centre");
    assert.equal(xmlField(await push(text("what's the price?", 2)), "Content"), "See /pricing");
    assert.equal(xmlField(await push(text("something else", 3)), "MsgType"), "transfer_customer_service");
    const click = `<xml><ToUserName>gh_test</ToUserName><FromUserName>oK</FromUserName><CreateTime>1700001003</CreateTime><MsgType>event</MsgType><Event>CLICK</Event><EventKey>MENU_CONTACT</EventKey></xml>`;
    assert.equal(xmlField(await push(click), "Content"), "Call us: 400-000-0000");
  });

  test("try-it shows the reply a message would get", async () => {
    await admin("/rules", { method: "PUT", body: JSON.stringify(RULES) });
    const r = await admin("/rules/try", { method: "POST", body: JSON.stringify({ kind: "subscribe", scene: "pricing" }) });
    assert.equal(r.status, 200);
    const body = await r.json();
    assert.deepEqual(body.reply, RULES.welcome.scenes.pricing);
    assert.match(body.xml, /10% off today/);
    const bad = await admin("/rules/try", { method: "POST", body: JSON.stringify({ kind: "teleport" }) });
    assert.equal(bad.status, 400);
  });
});

describe("simulator push command", () => {
  let s;
  before(async () => { s = await startStack({ WECHAT_ENCODING_AES_KEY: AES_KEY }); });
  after(async () => { await s?.stop(); });

  test("delivers an encrypted follow, repeats it like WeChat's retries, and decrypts the replies", () => {
    const env = { PATH: process.env.PATH, ...s.config, WECHAT_ENCODING_AES_KEY: AES_KEY };
    const r = spawnSync(SIM, ["push", "subscribe", "pricing", "--url", `${s.base}/wechat`, "--from", "oSim", "--repeat", "3", "--env-file", "/dev/null"], { env, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const deliveries = r.stdout.split(/^delivery \d: HTTP /m).filter(Boolean);
    assert.equal(deliveries.length, 3);
    for (const d of deliveries) {
      assert.match(d, /^200\n/);
      assert.equal(xmlField(d, "Content"), s.config.WELCOME_TEXT);
      assert.equal(xmlField(d, "ToUserName"), "oSim");
    }
    assert.equal(new Set(deliveries).size, 1, "retries get the identical reply");
  });

  test("a wrong token is reported with the worker's 403", () => {
    const env = { PATH: process.env.PATH, ...s.config, WECHAT_TOKEN: "wrongtoken", WECHAT_ENCODING_AES_KEY: AES_KEY };
    const r = spawnSync(SIM, ["push", "text", "hi", "--url", `${s.base}/wechat`, "--env-file", "/dev/null"], { env, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /HTTP 403/);
  });
});
