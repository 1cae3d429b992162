// The customer-service inbox (issue 17, its API): what followers write lands in their
// conversation in their shard, the owner reads it with the follower's window and replies
// through customer-service messages — refused before WeChat is asked once the window is spent;
// WeChat's own 45015 comes back as WeChat's.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startStack } from "./support/stack.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe("inbox", () => {
  let s, who;
  before(async () => {
    s = await startStack({}, { followers: 3 });
    await s.admin("/rules", { method: "PUT", body: { keywords: [{ match: "contains", pattern: "order", reply: { type: "text", content: "An agent will answer shortly." } }] } });
    who = (await s.sim("/sim/follow", {})).openid;
  });
  after(async () => { await s?.stop(); });

  const reply = (openid, content) => s.admin(`/inbox/${openid}/messages`, { method: "POST", body: { type: "text", content } });

  test("a follower's message and the automatic reply land in their conversation, unread", async () => {
    await s.sim("/sim/text", { openid: who, content: "where is my order?" });
    let inbox;
    for (let i = 0; i < 30; i++) {
      inbox = await (await s.admin("/inbox")).json();
      if (inbox.threads.some((t) => t.openid === who && t.unread === 2)) break;
      await sleep(100);
    }
    const thread = inbox.threads.find((t) => t.openid === who);
    assert.ok(thread, JSON.stringify(inbox));
    assert.equal(thread.unread, 2, "the follow and the message");
    assert.equal(thread.preview, "An agent will answer shortly.");
    const c = await (await s.admin(`/inbox/${who}`)).json();
    assert.deepEqual(c.entries.map((e) => [e.dir, e.by, e.text]), [
      ["in", "follower", "subscribe"], ["out", "auto", s.config.WELCOME_TEXT],
      ["in", "follower", "where is my order?"], ["out", "auto", "An agent will answer shortly."],
    ]);
    assert.equal(c.can_reply, true);
    assert.equal(c.window.open, true);
  });

  test("the owner replies within the window; past it the reply is refused before WeChat is asked", async () => {
    const sent = [];
    for (let i = 1; i <= 8; i++) {
      const r = await reply(who, `reply ${i}`);
      assert.equal(r.status, 200, `reply ${i}: ${await r.clone().text()}`);
      sent.push(i);
    }
    const inbox = await s.sim(`/sim/inbox?openid=${who}`);
    assert.equal(inbox.messages.filter((m) => m.kind === "cs").length, 8, "3 in the follow's minute, then 5 in the 48 hours");
    const calls = (await s.sim("/sim/status")).calls;
    const refused = await reply(who, "one too many");
    assert.equal(refused.status, 422);
    assert.match((await refused.json()).message, /window is spent: 5 messages were sent since their last message; it reopens when they write again/);
    assert.equal((await s.sim("/sim/status")).calls, calls, "WeChat was not asked");
    const c = await (await s.admin(`/inbox/${who}`)).json();
    assert.equal(c.can_reply, false);
    assert.equal(c.entries.filter((e) => e.by === "owner").length, 8);
    // The follower writing again reopens it.
    await s.sim("/sim/text", { openid: who, content: "thanks" });
    await sleep(300);
    assert.equal((await reply(who, "you are welcome")).status, 200);
  });

  test("a broadcast joins each recipient's conversation once, without making it unread", async () => {
    const a = (await s.sim("/sim/follow", {})).openid, b = (await s.sim("/sim/follow", {})).openid;
    await s.sim("/sim/text", { openid: a, content: "hi" });
    await sleep(300);
    await s.admin(`/inbox/${a}/read`, { method: "POST", body: {} });
    const body = { id: "inbox-news", segment: { kind: "open_ids", openids: [a, b] }, message: { type: "text", content: "Our winter sale starts today" } };
    for (const _ of [1, 2]) assert.equal((await s.admin("/broadcasts", { method: "POST", body })).status, 200, "sent, then the same id again");
    for (const o of [a, b]) {
      const c = await (await s.admin(`/inbox/${o}`)).json();
      assert.deepEqual(c.entries.filter((e) => e.by === "broadcast").map((e) => [e.dir, e.kind, e.text]), [["out", "text", "Our winter sale starts today"]], o);
    }
    const thread = (await (await s.admin("/inbox")).json()).threads.find((t) => t.openid === a);
    assert.equal(thread.unread, 0, "a broadcast is nothing to answer");
  });

  test("the live channel: a one-time ticket, then each moved conversation within a second", async () => {
    const wsBase = s.base.replace(/^http/, "ws");
    const refused = await new Promise((resolve) => {
      const ws = new WebSocket(`${wsBase}/api/inbox/live?ticket=nope`);
      ws.onopen = () => resolve("open");
      ws.onerror = () => resolve("refused");
    });
    assert.equal(refused, "refused", "no channel without a ticket");
    // A push with no console open: the worker reads that none listens (and does not ask again
    // for 10 s); the ticket below must tell it at once.
    await s.sim("/sim/text", { openid: who, content: "before any console" });
    const t = await (await s.admin("/inbox/ticket", { method: "POST", body: {} })).json();
    const heard = [];
    const ws = new WebSocket(`${wsBase}${t.url}`);
    await new Promise((resolve, reject) => { ws.onmessage = (e) => { heard.push(JSON.parse(e.data)); resolve(); }; ws.onerror = reject; });
    assert.equal(heard[0].type, "hello");
    const again = await new Promise((resolve) => {
      const w2 = new WebSocket(`${wsBase}${t.url}`);
      w2.onopen = () => { w2.close(); resolve("open"); };
      w2.onerror = () => resolve("refused");
    });
    assert.equal(again, "refused", "a ticket opens one channel");
    const third = (await s.sim("/sim/follow", {})).openid;
    const sent = Date.now();
    await s.sim("/sim/text", { openid: third, content: "anyone there?" });
    for (let i = 0; i < 40 && !heard.some((m) => m.type === "changed" && m.openid === third); i++) await sleep(25);
    const got = heard.find((m) => m.type === "changed" && m.openid === third);
    assert.ok(got, JSON.stringify(heard));
    assert.ok(Date.now() - sent < 1000, `heard within a second (${Date.now() - sent} ms)`);
    ws.close();
  });

  test("WeChat's 45015 is answered as WeChat's; read and handled are kept", async () => {
    const other = (await s.sim("/sim/follow", {})).openid;
    await s.sim("/sim/text", { openid: other, content: "hello" });
    await sleep(300);
    await s.sim("/sim/faults", { path: "/cgi-bin/message/custom/send", errcode: 45015, count: 1 });
    const r = await reply(other, "hi");
    assert.equal(r.status, 429);
    assert.equal((await r.json()).errcode, 45015);
    await s.sim("/sim/faults", undefined, "DELETE");
    assert.equal((await s.admin(`/inbox/${other}/read`, { method: "POST", body: { handled: true } })).status, 200);
    const t = (await (await s.admin("/inbox")).json()).threads.find((x) => x.openid === other);
    assert.deepEqual([t.unread, t.handled], [0, true]);
    assert.equal((await reply("oNobodyKnown", "hi")).status, 404);
  });

  test("WeChat's 45047: messages sent by another tool spent the window wxedge thought open", async () => {
    const other = (await s.sim("/sim/follow", {})).openid;
    await s.sim("/sim/text", { openid: other, content: "is anyone there?" });
    await sleep(300);
    // The owner's other tool (a CRM, say) shares the account's stable token and answers five times.
    const tok = await (await fetch(`${s.simBase}/cgi-bin/stable_token`, {
      method: "POST",
      body: JSON.stringify({ grant_type: "client_credential", appid: s.config.WECHAT_APPID, secret: s.config.WECHAT_APPSECRET }),
    })).json();
    assert.ok(tok.access_token, JSON.stringify(tok));
    let spent = 0;
    for (let i = 0; i < 10 && spent < 8; i++) {
      const r = await (await fetch(`${s.simBase}/cgi-bin/message/custom/send?access_token=${tok.access_token}`, {
        method: "POST",
        body: JSON.stringify({ touser: other, msgtype: "text", text: { content: `from the CRM ${i}` } }),
      })).json();
      if (r.errcode === 45047) break;
      assert.equal(r.errcode, 0, JSON.stringify(r));
      spent++;
    }
    assert.equal(spent, 8, "3 in the follow's minute, then 5 in the 48 hours");
    const before = await (await s.admin(`/inbox/${other}`)).json();
    assert.equal(before.can_reply, true, "wxedge did not see the CRM's messages");
    const r = await reply(other, "hello from the console");
    assert.equal(r.status, 429);
    const body = await r.json();
    assert.equal(body.errcode, 45047, JSON.stringify(body));
    assert.match(body.message, /customer-service messages/);
    assert.equal((await (await s.admin(`/inbox/${other}`)).json()).entries.filter((e) => e.by === "owner").length, 0, "a refused reply is not shown as sent");
  });
});
