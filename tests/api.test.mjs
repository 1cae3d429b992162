// The WeChat API client through workerd against the simulator: the shared token and its
// refresh, retries and typed errors, and each typed call through the admin API.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startStack } from "./support/stack.mjs";

describe("WeChat API client", () => {
  let s;
  before(async () => { s = await startStack(); });
  after(async () => { await s?.stop(); });

  const json = async (r, status = 200) => {
    const body = await r.json();
    assert.equal(r.status, status, JSON.stringify(body));
    return body;
  };

  test("one stable token serves many calls; a token revoked by another server is refreshed once", async () => {
    for (let i = 0; i < 5; i++) await json(await s.admin("/tags"));
    const status = await s.sim("/sim/status");
    assert.equal(status.token_serial, 1, "five calls, one token");
    // Some other system calls /cgi-bin/token: WeChat revokes the token the worker holds.
    const rogue = await (await fetch(`${s.simBase}/cgi-bin/token?grant_type=client_credential&appid=${s.config.WECHAT_APPID}&secret=${s.config.WECHAT_APPSECRET}`)).json();
    assert.ok(rogue.access_token);
    const before = (await s.sim("/sim/status")).calls;
    await json(await s.admin("/tags"));
    const after = await s.sim("/sim/status");
    assert.equal(after.token_serial, 2, "no token minted by us: stable_token hands out the current one");
    assert.equal(after.calls - before, 3, "refused call, stable_token, retried call (/sim calls are not counted)");
  });

  test("-1 is retried with backoff; exhausted retries and other errors come back typed", async () => {
    await s.sim("/sim/faults", { path: "/cgi-bin/tags/get", errcode: -1, count: 2 });
    const ok = await json(await s.admin("/tags"));
    assert.ok(Array.isArray(ok.tags));
    await s.sim("/sim/faults", { path: "/cgi-bin/tags/get", errcode: -1, count: 10 });
    const busy = await json(await s.admin("/tags"), 503);
    assert.equal(busy.errcode, -1);
    assert.equal(busy.action, "retry_later");
    await s.sim("/sim/faults", undefined, "DELETE");
    await s.sim("/sim/faults", { path: "/cgi-bin/tags/get", errcode: 40164, count: 1 });
    const ip = await json(await s.admin("/tags"), 502);
    assert.equal(ip.action, "owner_action");
    assert.match(ip.message, /whitelist/);
    await s.sim("/sim/faults", { path: "/cgi-bin/tags/get", errcode: 45009, count: 1 });
    const quota = await json(await s.admin("/tags"), 429);
    assert.equal(quota.action, "quota_exhausted");
    await s.sim("/sim/faults", undefined, "DELETE");
  });

  test("QR codes: limits checked before calling, a fresh URL per code, a scan reaches the worker", async () => {
    const calls = (await s.sim("/sim/status")).calls;
    const refused = await json(await s.admin("/qr", { method: "POST", body: { scene: 100001, permanent: true } }), 422);
    assert.equal(refused.error, "refused");
    assert.match(refused.message, /1\.\.=100000/);
    assert.equal((await s.sim("/sim/status")).calls, calls, "nothing reached the simulator");
    const a = await json(await s.admin("/qr", { method: "POST", body: { scene: "pricing", expire_seconds: 600 } }));
    const b = await json(await s.admin("/qr", { method: "POST", body: { scene: "pricing", expire_seconds: 600 } }));
    assert.match(a.url, /^http:\/\/weixin\.qq\.com\/q\//);
    assert.notEqual(a.url, b.url);
    assert.equal(a.expire_seconds, 600);
    const scan = await s.sim("/sim/scan", { url: a.url });
    assert.equal(scan.event, "subscribe");
    assert.equal(scan.scene, "pricing");
    assert.equal(scan.status, 200);
    assert.match(scan.reply, new RegExp(s.config.WELCOME_TEXT));
  });

  test("menus: refused with the button named, published, read back in both shapes, deleted", async () => {
    const bad = { button: [{ name: "Products and services", type: "click", key: "P" }] };
    const refused = await json(await s.admin("/menu", { method: "PUT", body: bad }), 422);
    assert.equal(refused.problems[0].path, "button[0].name");
    assert.match(refused.message, /"Products and services": the name is 21 bytes/);
    const check = await json(await s.admin("/menu/validate", { method: "POST", body: bad }));
    assert.equal(check.ok, false);

    const menu = { button: [
      { name: "Today", type: "click", key: "TODAY" },
      { name: "More", sub_button: [{ name: "Site", type: "view", url: "https://example.com/" }, { name: "Help", type: "click", key: "HELP" }] },
    ] };
    await json(await s.admin("/menu", { method: "PUT", body: menu }));
    const held = (await s.sim("/sim/status")).menu;
    assert.equal(held.menu.button[1].sub_button[0].url, "https://example.com/");
    const got = await json(await s.admin("/menu"));
    assert.equal(got.menu.button[0].key, "TODAY");
    const current = await json(await s.admin("/menu/current"));
    assert.equal(current.is_menu_open, true);
    assert.equal(current.menu.button[1].sub_button[1].key, "HELP");

    const tag = await json(await s.admin("/tags", { method: "POST", body: { name: "vip" } }));
    const cond = await json(await s.admin("/menu/conditional", { method: "POST", body: { ...menu, button: [{ name: "VIP", type: "click", key: "VIP" }], matchrule: { tag_id: String(tag.id) } } }));
    assert.ok(cond.menuid > 0);
    const follower = (await s.sim("/sim/followers?limit=1")).followers[0].openid;
    await json(await s.admin(`/tags/${tag.id}/members`, { method: "POST", body: { openids: [follower] } }));
    const seen = await json(await s.admin("/menu/trymatch", { method: "POST", body: { user_id: follower } }));
    assert.equal(seen.button[0].key, "VIP");
    await json(await s.admin(`/menu/conditional/${cond.menuid}`, { method: "DELETE" }));
    await json(await s.admin("/menu", { method: "DELETE" }));
    assert.equal((await s.sim("/sim/status")).menu, null);
    assert.deepEqual(await json(await s.admin("/menu")), { menu: null, conditionalmenu: [] });
  });

  test("tags and followers: tagging in batches, user info, paging", async () => {
    const tag = await json(await s.admin("/tags", { method: "POST", body: { name: "newsletter" } }));
    const long = await json(await s.admin("/tags", { method: "POST", body: { name: "x".repeat(31) } }), 422);
    assert.match(long.message, /1 to 30 bytes/);
    const page = await json(await s.admin("/users"));
    assert.equal(page.total, page.openids.length);
    assert.ok(page.total >= 20);
    await json(await s.admin(`/tags/${tag.id}/members`, { method: "POST", body: { openids: page.openids.slice(0, 12) } }));
    const tags = (await json(await s.admin("/tags"))).tags;
    assert.equal(tags.find((t) => t.id === tag.id).count, 12);
    const info = await json(await s.admin(`/users/${page.openids[0]}`));
    assert.equal(info.subscribe, 1);
    assert.ok(info.tagid_list.includes(tag.id));
    const unknown = await json(await s.admin("/users/oNobodyAtAll"), 422);
    assert.equal(unknown.action, "fix_request");
    assert.equal(unknown.errcode, 40003);
  });

  test("customer-service messages obey the follower's window", async () => {
    const [quiet, talker] = (await s.sim("/sim/followers?offset=15&limit=2")).followers.map((f) => f.openid);
    const closed = await json(await s.admin("/messages/custom", { method: "POST", body: { touser: quiet, reply: { type: "text", content: "hello?" } } }), 429);
    assert.equal(closed.errcode, 45015);
    await s.sim("/sim/text", { openid: talker, content: "a question" });
    await json(await s.admin("/messages/custom", { method: "POST", body: { touser: talker, reply: { type: "text", content: "an answer" } } }));
    const inbox = await s.sim(`/sim/inbox?openid=${talker}`);
    assert.ok(inbox.messages.some((m) => m.kind === "cs" && m.content.includes("an answer")), JSON.stringify(inbox));
    const none = await json(await s.admin("/messages/custom", { method: "POST", body: { touser: talker, reply: { type: "success" } } }), 422);
    assert.equal(none.error, "invalid");
  });

  test("mass-send preview reaches one follower and counts against no quota", async () => {
    const who = (await s.sim("/sim/followers?offset=3&limit=1")).followers[0];
    await json(await s.admin("/mass/preview", { method: "POST", body: { touser: who.openid, message: { type: "text", content: "draft" } } }));
    const after = (await s.sim("/sim/followers?offset=3&limit=1")).followers[0];
    assert.equal(after.mass_this_month, who.mass_this_month);
    const inbox = await s.sim(`/sim/inbox?openid=${who.openid}`);
    assert.ok(inbox.messages.some((m) => m.kind === "preview"));
  });
});
