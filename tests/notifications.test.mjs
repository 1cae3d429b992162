// Notifications (issue 16) through workerd and the simulator: template messages checked field
// by field before WeChat is asked, sent once per id, delivered into the follower's chat, and
// their status moved on by WeChat's job-finish callback.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack } from "./support/stack.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(f, what, ms = 5000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe("notifications on a service account", () => {
  let s, ship, openid;
  const data = (over = {}) => ({ thing1: "羊毛围巾 × 2", thing2: "顺丰速运", character_string3: "SF1234567890", time4: "2026-12-03 15:01", phrase5: "已发货", ...over });
  const send = (body) => s.admin("/notifications", { method: "POST", body });
  before(async () => {
    s = await startStack({}, { followers: 4 });
    openid = (await s.sim("/sim/follow", {})).openid;
  });
  after(async () => { await s?.stop(); });

  test("the templates are synced from WeChat with each field's kind and limit", async () => {
    const r = await s.admin("/notifications/templates");
    assert.equal(r.status, 200);
    const { templates } = await r.json();
    ship = templates.find((t) => t.title === "订单发货通知");
    assert.ok(ship, JSON.stringify(templates));
    assert.equal(ship.source, "template");
    assert.deepEqual(ship.fields.map((f) => [f.key, f.name, f.kind, f.max_chars]), [
      ["thing1", "商品名称", "thing", 20], ["thing2", "快递公司", "thing", 20], ["character_string3", "快递单号", "character_string", 20],
      ["time4", "发货时间", "time", 20], ["phrase5", "订单状态", "phrase", 5],
    ]);
    assert.ok(templates.some((t) => t.source === "subscribe"), "the subscribe templates too");
    // Added from the library by keyword names, then listed.
    const added = await s.admin("/notifications/templates", { method: "POST", body: { library_id: "OPENTM_BOOKED", keywords: ["预约项目", "预约时间"] } });
    assert.equal(added.status, 201);
    const a = await added.json();
    assert.deepEqual(a.template.fields.map((f) => f.kind), ["thing", "time"]);
    const bad = await s.admin("/notifications/templates", { method: "POST", body: { library_id: "OPENTM_BOOKED", keywords: ["颜色"] } });
    assert.equal(bad.status, 422);
    assert.equal((await bad.json()).errcode, 47003);
    assert.equal((await s.admin(`/notifications/templates/${a.template_id}`, { method: "DELETE" })).status, 200);
  });

  test("the industries, and a subscribe template picked from the library by category, title and keywords", async () => {
    const set = await s.admin("/notifications/industry", { method: "PUT", body: { primary: 1, secondary: 2 } });
    assert.equal(set.status, 200);
    assert.equal((await (await s.admin("/notifications/industry")).json()).primary_industry.first_class, "IT科技");
    const wrong = await s.admin("/notifications/industry", { method: "PUT", body: { primary: 99, secondary: 2 } });
    assert.equal((await wrong.json()).errcode, 47003, "WeChat's words for an industry it does not have");
    const categories = (await (await s.admin("/notifications/library")).json()).data;
    const logistics = categories.find((c) => c.name === "物流服务");
    assert.ok(logistics, JSON.stringify(categories));
    const titles = (await (await s.admin(`/notifications/library?category=${logistics.id}`)).json()).data;
    const title = titles.find((t) => t.title === "物流状态通知");
    assert.ok(title, JSON.stringify(titles));
    const keywords = (await (await s.admin(`/notifications/library?tid=${title.tid}`)).json()).data;
    assert.deepEqual(keywords.map((k) => k.name), ["快递单号", "物流状态", "更新时间"]);
    const added = await s.admin("/notifications/templates", { method: "POST", body: { tid: title.tid, kids: keywords.slice(0, 2).map((k) => k.kid), scene: "发货后提醒" } });
    assert.equal(added.status, 201, await added.clone().text());
    const a = await added.json();
    assert.equal(a.template.source, "subscribe");
    assert.deepEqual(a.template.fields.map((f) => f.kind), ["character_string", "phrase"]);
    const { templates } = await (await s.admin("/notifications/templates")).json();
    assert.ok(templates.some((t) => t.template_id === a.template_id), "listed");
    assert.equal((await s.admin(`/notifications/templates/${a.template_id}`, { method: "DELETE" })).status, 200);
    const after = (await (await s.admin("/notifications/templates")).json()).templates;
    assert.ok(!after.some((t) => t.template_id === a.template_id), "deleted at WeChat");
  });

  test("a send reaches the follower, is delivered after the job-finish callback, and a retry sends once", async () => {
    const r = await send({ id: "order-1001-shipped", openid, template_id: ship.template_id, data: data(), url: "https://shop.example/orders/1001" });
    assert.equal(r.status, 202);
    const n = await r.json();
    assert.equal(n.id, "order-1001-shipped");
    assert.equal(n.status, "sent");
    assert.ok(n.msg_id > 0);
    const card = await until(async () => (await s.sim(`/sim/inbox?openid=${openid}`)).messages.find((m) => m.kind === "notification"), "the card in the chat");
    assert.equal(card.content.title, "订单发货通知");
    assert.equal(card.content.fields.find((f) => f.key === "character_string3").value, "SF1234567890");
    const delivered = await until(async () => {
      const v = await (await s.admin("/notifications/order-1001-shipped")).json();
      return v.status === "delivered" && v;
    }, "delivered");
    assert.equal(delivered.msg_id, n.msg_id);
    // The same id again (a retried request): the same notice, WeChat not asked, no second card.
    const calls = async () => (await s.sim("/sim/status")).calls;
    const before = await calls();
    const again = await (await send({ id: "order-1001-shipped", openid, template_id: ship.template_id, data: data(), url: "https://shop.example/orders/1001" })).json();
    assert.equal(again.status, "delivered");
    assert.equal(await calls(), before, "a retry asks WeChat nothing");
    await sleep(500);
    assert.equal((await s.sim(`/sim/inbox?openid=${openid}`)).messages.filter((m) => m.kind === "notification").length, 1);
    // Concurrent retries of a new id: one card.
    const racing = await Promise.all([1, 2, 3, 4].map(() => send({ id: "order-1002", openid, template_id: ship.template_id, data: data({ character_string3: "SF2" }) })));
    assert.ok(racing.every((x) => x.status === 202));
    await sleep(800);
    assert.equal(await calls(), before + 1, "four concurrent requests with one id: one template/send");
    assert.equal((await s.sim(`/sim/inbox?openid=${openid}`)).messages.filter((m) => m.kind === "notification").length, 2);
    // The same id for someone else is refused.
    const other = (await s.sim("/sim/follow", {})).openid;
    const clash = await send({ id: "order-1002", openid: other, template_id: ship.template_id, data: data() });
    assert.equal(clash.status, 409);
    const history = await (await s.admin("/notifications?limit=10")).json();
    assert.deepEqual(history.notifications.map((x) => x.id).sort(), ["order-1001-shipped", "order-1002"]);
  });

  test("each field kind's rule is checked before WeChat is asked, naming the field", async () => {
    const calls = (await s.sim("/sim/status")).calls;
    for (const [over, message] of [
      [{ thing1: "一".repeat(21) }, "data.thing1: at most 20 characters, got 21"],
      [{ thing2: "顺丰\n速运" }, "data.thing2: no line breaks"],
      [{ character_string3: "顺丰123" }, "data.character_string3: not a character_string value"],
      [{ time4: "tomorrow" }, "data.time4: not a time value"],
      [{ phrase5: "ok" }, "data.phrase5: not a phrase value"],
      [{ phrase5: "已经发货了呀" }, "data.phrase5: at most 5 characters, got 6"],
      [{ thing9: "x" }, "data.thing9: not a field of template"],
    ]) {
      const r = await send({ openid, template_id: ship.template_id, data: data(over) });
      assert.equal(r.status, 422, message);
      assert.ok((await r.json()).message.includes(message), message);
    }
    const missing = data();
    delete missing.time4;
    assert.match((await (await send({ openid, template_id: ship.template_id, data: missing })).json()).message, /data\.time4: required \(发货时间\)/);
    assert.equal((await s.sim("/sim/status")).calls, calls, "no WeChat call for a notice that breaks a rule");
  });

  test("a follower who blocked notifications: refused; one who is gone: failed with WeChat's words", async () => {
    const blocker = (await s.sim("/sim/follow", {})).openid;
    await s.sim("/sim/notifications/block", { openid: blocker, blocked: true });
    const n = await (await send({ id: "blocked-1", openid: blocker, template_id: ship.template_id, data: data() })).json();
    assert.equal(n.status, "sent");
    const refused = await until(async () => {
      const v = await (await s.admin("/notifications/blocked-1")).json();
      return v.status === "refused" && v;
    }, "refused");
    assert.match(refused.error, /user block/);
    assert.equal((await s.sim(`/sim/inbox?openid=${blocker}`)).messages.filter((m) => m.kind === "notification").length, 0);
    await s.sim("/sim/unfollow", { openid: blocker });
    const gone = await (await send({ id: "gone-1", openid: blocker, template_id: ship.template_id, data: data() })).json();
    assert.equal(gone.status, "failed");
    assert.match(gone.error, /43004/);
  });

  test("subscribe notifications reach only a follower who accepted the popup", async () => {
    const { templates } = await (await s.admin("/notifications/templates")).json();
    const remind = templates.find((t) => t.source === "subscribe");
    const body = (id) => ({ id, openid, template_id: remind.template_id, data: { thing1: "洗牙", time2: "2026-12-05 10:00", thing3: "静安店" } });
    const refused = await (await send(body("remind-1"))).json();
    assert.equal(refused.status, "refused");
    assert.match(refused.error, /43101/);
    await s.sim("/sim/subscribe-popup", { openid, template_id: remind.template_id, accept: true });
    const accepted = await until(async () => {
      const v = await (await s.admin(`/notifications/subscriptions/${openid}`)).json();
      return v.templates?.find((t) => t.template_id === remind.template_id && t.status === "accept");
    }, "the popup's answer recorded");
    assert.ok(accepted.at > 0);
    const sent = await (await send(body("remind-2"))).json();
    assert.equal(sent.status, "sent");
    assert.ok((await s.sim(`/sim/inbox?openid=${openid}`)).messages.some((m) => m.kind === "notification" && m.msgtype === "subscribe"));
    // bizsend answers no msgid: WeChat's subscribe_msg_sent_event (follower + template) marks it delivered.
    const delivered = await until(async () => {
      const n = await (await s.admin("/notifications/remind-2")).json();
      return n.status === "delivered" && n;
    }, "delivered after subscribe_msg_sent_event");
    assert.ok(delivered.msg_id > 0, JSON.stringify(delivered));
    // The one-time acceptance is used up: the view says so, and WeChat refuses the next send.
    const after = (await (await s.admin(`/notifications/subscriptions/${openid}`)).json()).templates.find((t) => t.template_id === remind.template_id);
    assert.deepEqual([after.status, after.subscription], ["spent", "one_time"]);
    const third = await (await send(body("remind-3"))).json();
    assert.equal(third.status, "refused");
  });

  test("a batch with rate control, today's budget, and WeChat's daily limit", async () => {
    const people = [];
    for (let i = 0; i < 7; i++) people.push((await s.sim("/sim/follow", {})).openid);
    const recipients = people.map((o, i) => ({ openid: o, id: `batch-${i}`, data: data({ character_string3: `SF${i}` }) }));
    const wrong = await s.admin("/notifications/batch", { method: "POST", body: { template_id: ship.template_id, recipients: [...recipients.slice(0, 2), { openid: people[2], data: data({ thing1: "" }) }] } });
    assert.equal(wrong.status, 422);
    assert.match((await wrong.json()).message, /recipients\[2\]\.data\.thing1: empty/);
    const before = await (await s.admin("/notifications/budget")).json();
    const r = await (await s.admin("/notifications/batch", { method: "POST", body: { template_id: ship.template_id, recipients: recipients.slice(0, 4) } })).json();
    assert.deepEqual(r.results.map((x) => x.status), ["sent", "sent", "sent", "sent"]);
    assert.equal(r.budget.sent, before.sent + 4);
    assert.equal(r.budget.limit, 100000);
    assert.equal(r.budget.left, 100000 - r.budget.sent);
    // WeChat's daily limit (45009) is a failed status with its words; the rest are not sent.
    await s.sim("/sim/faults", { path: "/cgi-bin/message/template/send", errcode: 45009, count: 10 });
    const limited = await (await s.admin("/notifications/batch", { method: "POST", body: { template_id: ship.template_id, recipients: recipients.slice(4) } })).json();
    await s.sim("/sim/faults", undefined, "DELETE");
    assert.ok(limited.results.every((x) => x.status === "failed" && /45009/.test(x.error)), JSON.stringify(limited.results));
  });
});

describe("notifications on a subscription account", () => {
  test("refused up front, with the reason, before any WeChat call", async () => {
    const s = await startStack({ WECHAT_ACCOUNT_KIND: "subscription" }, { followers: 2 });
    try {
      const calls = (await s.sim("/sim/status")).calls;
      const r = await s.admin("/notifications", { method: "POST", body: { openid: "oAny", template_id: "T", data: { thing1: "x" } } });
      assert.equal(r.status, 403);
      assert.match((await r.json()).message, /service accounts; this is a subscription account/);
      assert.equal((await s.admin("/notifications/templates")).status, 403);
      assert.equal((await s.sim("/sim/status")).calls, calls);
    } finally {
      await s.stop();
    }
  });
});
