// Resharding (issue 14) through workerd: an account on 4 follower shards — imported followers,
// three from the expo, a tag, a broadcast sent — restarted with FOLLOWER_SHARDS=6 and
// FOLLOWER_SHARDS_FROM=4. A push meanwhile finds its follower in the old layout and writes the
// new; the ledger copies everyone else by itself; broadcasts wait until it is done; then every
// count, tag, scene and statistic is where it was, and the push's newer row is kept.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack, signedQuery } from "./support/stack.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const json = async (r, status = 200) => {
  const body = await r.json();
  assert.equal(r.status, status, JSON.stringify(body));
  return body;
};
const exactPlan = async (s, segment) => json(await s.admin("/broadcasts/plan", { method: "POST", body: { segment, exact: true } }));

async function until(what, f) {
  for (let i = 0; i < 200; i++) {
    const v = await f();
    if (v) return v;
    await sleep(100);
  }
  assert.fail(`${what} did not happen`);
}

test("followers move from 4 shards to 6 with their counts, tags, scenes and statistics", async () => {
  const dir = mkdtempSync(join(tmpdir(), "wxedge-reshard-"));
  try {
    let s = await startStack({ FOLLOWER_SHARDS: "4", DEV_CLOCK: "true" }, { followers: 25, dir });
    let expo, tagged, tagId;
    try {
      await until("the import", async () => (await json(await s.admin("/followers/import", { method: "POST", body: {} }))).done);
      const qr = await json(await s.admin("/qr", { method: "POST", body: { scene: "expo", expire_seconds: 3600 } }));
      expo = [];
      for (let i = 0; i < 3; i++) expo.push((await s.sim("/sim/scan", { url: qr.url })).openid);
      const everyone = (await s.sim("/sim/followers?offset=0&limit=100")).followers.map((f) => f.openid);
      tagId = (await json(await s.admin("/tags", { method: "POST", body: { name: "vip" } }))).id;
      tagged = everyone.filter((o) => !expo.includes(o)).slice(0, 5);
      await json(await s.admin(`/tags/${tagId}/members`, { method: "POST", body: { openids: tagged } }));
      const sent = await json(await s.admin("/broadcasts", { method: "POST", body: { id: "before", segment: { kind: "all" }, message: { type: "text", content: "hi" } } }));
      assert.equal(sent.eligible, 28);
      assert.deepEqual((await json(await s.admin("/quota"))).left, [0, 0, 0, 28, 0]);
    } finally {
      await s.stop();
    }

    s = await startStack({ FOLLOWER_SHARDS: "6", FOLLOWER_SHARDS_FROM: "4", DEV_CLOCK: "true" }, { followers: 25, dir });
    try {
      // A message from an expo follower before anything else: their record comes from the old
      // layout, their answer writes their row in the new one.
      const who = expo[0];
      const t = Math.floor(Date.now() / 1000);
      const push = `<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[${who}]]></FromUserName><CreateTime>${t}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[still here]]></Content><MsgId>${t}0001</MsgId></xml>`;
      const r = await fetch(`${s.base}/wechat?${signedQuery(s.config.WECHAT_TOKEN)}`, { method: "POST", body: push });
      assert.equal(r.status, 200, await r.text());
      const moved = await until("the push's row in the new layout", async () => {
        const v = await json(await s.admin(`/followers/${who}`));
        return v.index && v.record?.last_message_at === t && v;
      });
      assert.equal(moved.record.scene, "expo", "the record came from the old layout");

      // The ledger copies the rest; broadcasts wait for it.
      const early = await s.admin("/broadcasts/plan", { method: "POST", body: { segment: { kind: "all" }, exact: true } });
      assert.ok([200, 503].includes(early.status), `${early.status}`);
      const done = await until("the reshard", async () => {
        const v = await json(await s.admin("/followers/reshard"));
        return v.cursor?.done && v;
      });
      assert.deepEqual([done.resharding, done.cursor.from, done.cursor.to, done.cursor.rows], [true, 4, 6, 28]);
      const all = await exactPlan(s, { kind: "all" });
      assert.deepEqual([all.eligible, all.at_quota, all.source], [28, 0, "shards"]);
      assert.deepEqual((await json(await s.admin("/quota"))).left, [0, 0, 0, 28, 0], "this month's broadcast counted for everyone, once");
      assert.equal((await exactPlan(s, { kind: "scene", scene: "expo" })).eligible, 3);
      assert.equal((await exactPlan(s, { kind: "tag", tag_id: tagId })).eligible, 5);
      const stats = await json(await s.admin("/stats?days=1"));
      assert.equal(Object.values(stats)[0].follows.expo, 3, JSON.stringify(stats));
      const kept = await json(await s.admin(`/followers/${who}`));
      assert.deepEqual([kept.record.last_message_at, kept.mass_this_month], [t, 1], "the push's newer row kept, with its count");
      const second = await json(await s.admin("/broadcasts", { method: "POST", body: { id: "after", segment: { kind: "all" }, message: { type: "text", content: "again" } } }));
      assert.deepEqual([second.status, second.eligible], ["sent", 28]);
    } finally {
      await s.stop();
    }

    // FOLLOWER_SHARDS_FROM removed: the new layout alone.
    s = await startStack({ FOLLOWER_SHARDS: "6" }, { followers: 25, dir });
    try {
      assert.deepEqual((await json(await s.admin("/quota"))).left, [0, 0, 28, 0, 0]);
    } finally {
      await s.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
