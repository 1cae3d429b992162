// Followers, quotas and broadcasts through workerd + the ledger Durable Object + the simulator:
// segmented broadcasts over a month never exceed 4 per follower (and WeChat filters nobody),
// a subscription account's one send per China day, concurrent sends, retried requests, import.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startStack } from "./support/stack.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function json(r, status = 200) {
  const body = await r.json();
  assert.equal(r.status, status, JSON.stringify(body));
  return body;
}

async function importAll(s) {
  let step;
  for (let i = 0; i < 20; i++) {
    step = await json(await s.admin("/followers/import", { method: "POST", body: {} }));
    if (step.done) return step;
  }
  assert.fail("import did not finish: " + JSON.stringify(step));
}

/** Waits until every mass job the simulator ran has been reported to the worker. */
async function jobsFinished(s) {
  for (let i = 0; i < 50; i++) {
    const st = await s.sim("/sim/status");
    if (st.mass.recent.every((j) => j.finished)) return st;
    await sleep(100);
  }
  assert.fail("mass jobs did not finish");
}

async function allSimFollowers(s) {
  return (await s.sim("/sim/followers?offset=0&limit=1000")).followers;
}

describe("service account: a month of segmented broadcasts", () => {
  let s;
  before(async () => { s = await startStack({ DEV_CLOCK: "true" }, { followers: 30 }); });
  after(async () => { await s?.stop(); });
  const send = (id, segment, content = `message ${id}`) =>
    s.admin("/broadcasts", { method: "POST", body: { id, segment, message: { type: "text", content } } });
  const plan = (segment, exact = true) => s.admin("/broadcasts/plan", { method: "POST", body: { segment, exact } });

  test("existing followers are imported from user/get, new ones are recorded by the callbacks", async () => {
    const imported = await importAll(s);
    assert.equal(imported.imported, 30);
    const qr = await json(await s.admin("/qr", { method: "POST", body: { scene: "pricing", expire_seconds: 3600 } }));
    for (let i = 0; i < 5; i++) {
      const scan = await s.sim("/sim/scan", { url: qr.url });
      assert.equal(scan.status, 200, JSON.stringify(scan));
    }
    const p = await json(await plan({ kind: "all" }));
    assert.equal(p.eligible, 35);
    assert.equal(p.method, "sendall");
    const pricing = await json(await plan({ kind: "scene", scene: "pricing" }));
    assert.equal(pricing.eligible, 5);
    assert.equal(p.source, "shards", "an exact plan asks the follower shards");
    // Each shard copies its quota view to KV within 10 s of a change (or of its first request:
    // a shard nobody follows in has one too); the quota view adds them up.
    let quota;
    for (let i = 0; i < 60 && (quota?.kv?.followers !== 35 || quota?.kv?.shards !== 16); i++) {
      if (i) await sleep(500);
      quota = await json(await s.admin("/quota"));
    }
    assert.equal(quota.kv.followers, 35, JSON.stringify(quota.kv));
    assert.deepEqual(quota.kv.by_used, [35, 0, 0, 0, 0]);
    assert.ok(quota.kv.shards === 16 && quota.kv.of === 16 && quota.kv.as_of > 0, JSON.stringify(quota.kv));
    assert.deepEqual(quota.left, [0, 0, 0, 0, 35]);
    // The preview reads those copies: every shard has one now.
    const preview = await json(await plan({ kind: "scene", scene: "pricing" }, false));
    assert.deepEqual([preview.source, preview.eligible], ["kv", 5]);
    assert.deepEqual((await json(await plan({ kind: "open_ids", openids: ["x", "y"] }, false))).source, "shards", "a list is counted in the shards");
    const one = (await s.sim("/sim/followers?offset=0&limit=1")).followers[0].openid;
    const view = await json(await s.admin(`/followers/${one}`));
    assert.equal(view.index.following, true);
    assert.equal(view.mass_left_this_month, 4);
  });

  test("segments: all, a tag, a scene, a list — nobody over 4, WeChat filters nobody", async () => {
    const everyone = (await allSimFollowers(s)).map((f) => f.openid);
    const tag = await json(await s.admin("/tags", { method: "POST", body: { name: "vip" } }));
    const vips = everyone.slice(0, 10);
    await json(await s.admin(`/tags/${tag.id}/members`, { method: "POST", body: { openids: vips } }));
    assert.equal((await json(await plan({ kind: "tag", tag_id: tag.id }))).eligible, 10, "the shards learn the tag");

    const m1 = await json(await send("m1", { kind: "all" }));
    assert.equal(m1.method, "sendall");
    assert.equal(m1.status, "sent");
    assert.equal((await json(await send("m2", { kind: "tag", tag_id: tag.id }))).eligible, 10);
    const m3 = await json(await send("m3", { kind: "scene", scene: "pricing" }));
    assert.equal(m3.method, "send");
    await json(await send("m4", { kind: "all" }));
    await json(await send("m5", { kind: "all" }));
    // vip (m1 m2 m4 m5) and pricing (m1 m3 m4 m5) followers are at 4; the other 20 at 3.
    const p = await json(await plan({ kind: "all" }));
    assert.deepEqual([p.eligible, p.at_quota, p.method], [20, 15, "send"]);
    assert.match(p.at_quota_until, /-01T00:00:00\+08:00$/);
    const m6 = await json(await send("m6", { kind: "all" }));
    assert.equal(m6.eligible, 20);
    const list = await json(await send("m7", { kind: "open_ids", openids: everyone.slice(0, 12) }), 429);
    assert.equal(list.error, "over_quota");
    assert.match(list.message, /already had 4 mass messages this month/);

    const status = await jobsFinished(s);
    assert.equal(status.mass.recent.length, 6);
    for (const job of status.mass.recent) assert.equal(job.filtered_out, 0, JSON.stringify(job));
    for (const f of await allSimFollowers(s)) assert.equal(f.mass_this_month, 4, f.openid);
    const quota = await json(await s.admin("/quota"));
    assert.deepEqual(quota.left, [35, 0, 0, 0, 0]);
    // MASSSENDJOBFINISH reached the ledger: every batch has its outcome.
    for (let i = 0; i < 30; i++) {
      const h = await json(await s.admin("/broadcasts"));
      if (h.broadcasts.every((b) => b.status === "finished")) break;
      await sleep(100);
    }
    const history = await json(await s.admin("/broadcasts"));
    assert.deepEqual(history.broadcasts.map((b) => b.id), ["m6", "m5", "m4", "m3", "m2", "m1"]);
    for (const b of history.broadcasts) {
      assert.equal(b.status, "finished", JSON.stringify(b));
      assert.equal(b.batches[0].outcome.filtered_out, 0);
    }
  });

  test("a retried send request sends nothing twice", async () => {
    const jobs = (await s.sim("/sim/status")).mass.jobs;
    const again = await json(await send("m6", { kind: "all" }));
    assert.equal(again.fresh, false);
    assert.equal((await s.sim("/sim/status")).mass.jobs, jobs, "no new job at WeChat");
    const edited = await json(await send("m6", { kind: "all" }, "an edited message"), 409);
    assert.equal(edited.error, "conflict");
    const stats = await json(await s.admin("/stats?days=2"));
    const follows = Object.values(stats).reduce((n, d) => n + (d.follows?.pricing ?? 0), 0);
    assert.equal(follows, 5);
  });
});

describe("service account: concurrent sends and refusals", () => {
  let s;
  before(async () => { s = await startStack({}, { followers: 12 }); });
  after(async () => { await s?.stop(); });

  test("two owners sending at once to overlapping audiences never double-book a follower", async () => {
    await importAll(s);
    for (const id of ["c1", "c2", "c3"]) {
      await json(await s.admin("/broadcasts", { method: "POST", body: { id, segment: { kind: "all" }, message: { type: "text", content: id } } }));
    }
    // Everyone has one left. Two sends race: all followers, and a list of 8 of them.
    const some = (await allSimFollowers(s)).slice(0, 8).map((f) => f.openid);
    const [a, b] = await Promise.all([
      s.admin("/broadcasts", { method: "POST", body: { id: "race-a", segment: { kind: "all" }, message: { type: "text", content: "A" } } }),
      s.admin("/broadcasts", { method: "POST", body: { id: "race-b", segment: { kind: "open_ids", openids: some }, message: { type: "text", content: "B" } } }),
    ]);
    const answers = [await a.json(), await b.json()];
    const reached = answers.filter((x) => x.status).reduce((n, x) => n + x.eligible, 0);
    assert.equal(reached, 12, JSON.stringify(answers));
    const status = await jobsFinished(s);
    for (const job of status.mass.recent) assert.equal(job.filtered_out, 0, JSON.stringify(job));
    for (const f of await allSimFollowers(s)) assert.equal(f.mass_this_month, 4, f.openid);
  });

  test("WeChat refusing a batch releases its quota", async () => {
    const s2 = await startStack({}, { followers: 6 });
    try {
      await importAll(s2);
      await s2.sim("/sim/faults", { path: "/cgi-bin/message/mass/sendall", errcode: 45009, count: 1 });
      const failed = await json(await s2.admin("/broadcasts", { method: "POST", body: { id: "f1", segment: { kind: "all" }, message: { type: "text", content: "x" } } }), 502);
      assert.equal(failed.status, "failed");
      assert.match(failed.message, /45009/);
      assert.deepEqual((await json(await s2.admin("/quota"))).left, [0, 0, 0, 0, 6], "released");
      const ok = await json(await s2.admin("/broadcasts", { method: "POST", body: { id: "f2", segment: { kind: "all" }, message: { type: "text", content: "x" } } }));
      assert.equal(ok.status, "sent");
      assert.deepEqual((await json(await s2.admin("/quota"))).left, [0, 0, 0, 6, 0]);
    } finally {
      await s2.stop();
    }
  });
});

describe("subscription account: one mass send per China day", () => {
  let s;
  before(async () => {
    s = await startStack({ WECHAT_ACCOUNT_KIND: "subscription", DEV_CLOCK: "true" }, { followers: 8 });
  });
  after(async () => { await s?.stop(); });

  test("refused a second send the same China day, allowed after midnight UTC+8", async () => {
    await importAll(s);
    const realNow = Math.floor(Date.now() / 1000);
    // 23:58 China time tomorrow, in unix seconds.
    const nextMidnight = (Math.floor((realNow + 8 * 3600) / 86400) + 2) * 86400 - 8 * 3600;
    const lateEvening = nextMidnight - 120;
    const at = (t) => ({ "x-wxedge-now": String(t) });
    const send = (id, t) => s.admin("/broadcasts", { method: "POST", headers: at(t), body: { id, segment: { kind: "all" }, message: { type: "text", content: id } } });
    await s.sim("/sim/clock", { offset_secs: lateEvening - realNow });
    const first = await json(await send("d1", lateEvening));
    assert.equal(first.method, "sendall");
    const second = await json(await send("d2", lateEvening + 30), 429);
    assert.equal(second.error, "over_quota");
    assert.match(second.message, /next one is free at \d{4}-\d\d-\d\dT00:00:00\+08:00/);
    const p = await json(await s.admin("/broadcasts/plan", { method: "POST", headers: at(lateEvening + 40), body: { segment: { kind: "all" }, exact: true } }));
    assert.equal(p.today_free, false);
    assert.ok(p.next_free_at.endsWith("T00:00:00+08:00"));
    const list = await json(await s.admin("/broadcasts", { method: "POST", headers: at(lateEvening + 50), body: { id: "d3", segment: { kind: "open_ids", openids: ["oA", "oB"] }, message: { type: "text", content: "x" } } }), 403);
    assert.equal(list.error, "wrong_account_kind");

    await s.sim("/sim/clock", { offset_secs: nextMidnight + 30 - realNow });
    const after = await json(await send("d4", nextMidnight + 30));
    assert.equal(after.status, "sent");
    const status = await jobsFinished(s);
    assert.equal(status.mass.recent.length, 2, "WeChat saw exactly two sends");
  });
});
