// Forwarding to the owner's backend and the 5-second guard: a reply that misses the budget is
// answered `success` and arrives as a customer-service message instead.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { startStack, freePort, xmlField, signedQuery } from "./support/stack.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe("backend forwarding and the reply budget", () => {
  let s, backend, port;
  const seen = [];
  let delayMs = 0;
  before(async () => {
    port = await freePort();
    // An existing WeChat handler: gets WeChat's plain XML and answers with passive-reply XML.
    backend = http.createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", async () => {
        seen.push({ auth: req.headers.authorization, body });
        await sleep(delayMs);
        const from = xmlField(body, "FromUserName");
        const content = xmlField(body, "Content");
        res.setHeader("content-type", "text/xml");
        res.end(`<xml><ToUserName><![CDATA[${from}]]></ToUserName><FromUserName><![CDATA[gh]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[backend says: ${content}]]></Content></xml>`);
      });
    }).listen(port, "127.0.0.1");
    s = await startStack({ REPLY_BUDGET_MS: "1000" });
    const rules = {
      keywords: [{ match: "exact", pattern: "hours", reply: { type: "text", content: "9 to 5" } }],
      default: { type: "text", content: "fallback reply" },
      forward: { url: `http://127.0.0.1:${port}/wechat`, token: "backend-secret" },
    };
    const put = await s.admin("/rules", { method: "PUT", body: rules });
    assert.equal(put.status, 200, await put.text());
  });
  after(async () => { await s?.stop(); backend?.close(); });

  const follower = async (i) => (await s.sim(`/sim/followers?offset=${i}&limit=1`)).followers[0].openid;

  test("keywords answer first; the rest goes to the backend, which gets WeChat's XML and the token", async () => {
    const who = await follower(0);
    const kw = await s.sim("/sim/text", { openid: who, content: "hours" });
    assert.equal(xmlField(kw.reply, "Content"), "9 to 5");
    assert.equal(seen.length, 0);
    const fw = await s.sim("/sim/text", { openid: who, content: "where is my order?" });
    assert.equal(xmlField(fw.reply, "Content"), "backend says: where is my order?");
    assert.equal(seen.at(-1).auth, "Bearer backend-secret");
    assert.equal(xmlField(seen.at(-1).body, "MsgType"), "text");
  });

  test("a slow backend: success within the budget, then the reply as a customer-service message", async () => {
    const who = await follower(1);
    delayMs = 2500;
    const started = Date.now();
    const slow = await s.sim("/sim/text", { openid: who, content: "slow question" });
    const took = Date.now() - started;
    assert.equal(slow.reply, "success");
    assert.ok(took < 2500, `answered in ${took} ms, before the backend`);
    let cs;
    for (let i = 0; i < 40 && !cs; i++) {
      await sleep(200);
      cs = (await s.sim(`/sim/inbox?openid=${who}`)).messages.find((m) => m.kind === "cs");
    }
    assert.ok(cs, "the late reply arrived");
    assert.match(cs.content, /backend says: slow question/);
    delayMs = 0;
  });

  test("8 deliveries of one message at once ask the backend once, and each gets its reply", async () => {
    const who = await follower(3);
    delayMs = 400;
    // As WeChat delivers a push again: the same signed query and body, here all at once.
    const xml = `<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[${who}]]></FromUserName><CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[duplicated question]]></Content><MsgId>880000000001</MsgId></xml>`;
    const query = signedQuery(s.config.WECHAT_TOKEN);
    const before = seen.length;
    const answers = await Promise.all(Array.from({ length: 8 }, () => fetch(`${s.base}/wechat?${query}`, { method: "POST", body: xml }).then(async (r) => [r.status, await r.text()])));
    assert.equal(seen.length - before, 1, "the owner's backend was asked once");
    for (const [status, body] of answers) {
      assert.equal(status, 200);
      assert.equal(xmlField(body, "Content"), "backend says: duplicated question");
    }
    // WeChat's later retry: the same answer, still one backend call.
    const again = await fetch(`${s.base}/wechat?${query}`, { method: "POST", body: xml });
    assert.equal(xmlField(await again.text(), "Content"), "backend says: duplicated question");
    assert.equal(seen.length - before, 1);
    delayMs = 0;
  });

  test("a failing backend: the fallback reply, in time", async () => {
    backend.close();
    const who = await follower(2);
    const r = await s.sim("/sim/text", { openid: who, content: "anyone there?" });
    assert.equal(xmlField(r.reply, "Content"), "fallback reply");
  });
});
