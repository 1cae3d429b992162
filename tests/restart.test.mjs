// The local stack survives a restart (issue 19): the simulator keeps its state beside the
// worker's, so the codes the worker pooled still scan after `make dev` is stopped and started
// again, and a WeChat that forgot its codes (its state wiped, the worker's kept) gets them
// replaced instead of lent again.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack } from "./support/stack.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A new visit from address `i` (a visitor's address picks the pool's shard): `{visit, url}`. */
async function lend(s, i, page) {
  const r = await fetch(`${s.base}/api/qr`, { method: "POST", headers: { "cf-connecting-ip": `203.0.113.${i % 100}` }, body: JSON.stringify({ page, scene: `p${i}` }) });
  const body = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  assert.ok(body.visit && !body.static, `a pooled code, not the ordinary one: ${JSON.stringify(body)}`);
  return body;
}

async function stateOf(s, visit) {
  return (await (await fetch(`${s.base}/api/qr/${visit}`)).json()).state;
}

/** Every visit's code scans (a new person each), and the follow is credited to that visit's page. */
async function everyCodeScans(s, visits) {
  const urls = visits.map((v) => v.url);
  assert.equal(new Set(urls).size, urls.length, `no two live visits share a code: ${urls.join(" ")}`);
  for (const v of visits) {
    const scan = await s.sim("/sim/scan", { url: v.url });
    assert.equal(scan.event, "subscribe", `${v.url} scans: ${JSON.stringify(scan)}`);
    for (let i = 0; i < 40 && (await stateOf(s, v.visit)) !== "followed"; i++) await sleep(50);
    assert.equal(await stateOf(s, v.visit), "followed", `the follow reached visit ${v.visit}`);
    const who = await (await s.admin(`/followers/${scan.openid}`)).json();
    assert.equal(who.record.page, v.page, "credited to the page that showed the code");
  }
}

describe("the local stack survives a restart", () => {
  test("stopped and started on the same state: both sides as they were, every code scans", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wxedge-restart19-"));
    try {
      let s = await startStack({}, { dir, followers: 4 });
      const menu = { button: [{ name: "Today", type: "click", key: "TODAY" }] };
      let openid, before, firstCode, followedAt;
      try {
        assert.equal((await s.admin("/menu", { method: "PUT", body: menu })).status, 200);
        // Five codes in the pool: one followed through, four left lent and waiting.
        const visits = [];
        for (let i = 1; i <= 5; i++) visits.push({ ...(await lend(s, i, `/before-${i}`)), page: `/before-${i}` });
        await everyCodeScans(s, visits.slice(0, 1));
        [firstCode, followedAt] = [visits[0].url, Date.now()];
        openid = (await s.sim("/sim/follow", {})).openid;
        for (let i = 0; i < 10 && !(await (await s.admin("/followers/import", { method: "POST", body: {} })).json()).done; i++);
        const sent = await (await s.admin("/broadcasts", { method: "POST", body: { id: "before-restart", segment: { kind: "all" }, message: { type: "text", content: "see you" } } })).json();
        assert.equal(sent.status, "sent", JSON.stringify(sent));
        for (let i = 0; i < 40 && !(await s.sim("/sim/inbox?openid=" + openid)).messages.some((m) => m.kind === "mass"); i++) await sleep(50);
        before = await s.sim("/sim/status");
      } finally {
        await s.stop();
      }
      assert.ok(existsSync(join(dir, "state", "wxedge-sim.json")), "the simulator's state sits beside the worker's");

      s = await startStack({}, { dir, followers: 4 });
      try {
        const after = await s.sim("/sim/status");
        assert.equal(after.followers, before.followers, "the simulator's followers");
        assert.deepEqual(after.qrcodes, before.qrcodes, "its codes");
        assert.equal(after.menu.menu.button[0].key, "TODAY", "its menu");
        assert.equal(after.mass.jobs, before.mass.jobs, "its mass jobs");
        assert.equal(after.token_serial, before.token_serial, "the worker's token is still WeChat's: no new one was needed");
        assert.ok((await s.sim("/sim/inbox?openid=" + openid)).messages.some((m) => m.kind === "mass" && /see you/.test(JSON.stringify(m.content))), "the follower's inbox");
        assert.equal((await (await s.admin(`/followers/${openid}`)).json()).record.following, true, "the worker's follower");
        assert.equal((await (await s.admin("/menu")).json()).menu.button[0].key, "TODAY", "the menu, read from WeChat by the worker");
        assert.deepEqual((await (await s.admin("/broadcasts")).json()).broadcasts.map((b) => b.id), ["before-restart"], "the worker's broadcast");
        // Codes handed out after the restart — pooled ones lent again and new ones — all scan,
        // each to its own visit.
        // The followed code is free again once its grace is over (the others are still lent).
        await sleep(Math.max(0, followedAt + 32_000 - Date.now()));
        const visits = [];
        // The first from the address that followed before, so from the same shard's pool.
        for (const i of [101, 11, 12, 13, 14, 15, 16]) visits.push({ ...(await lend(s, i, `/after-${i}`)), page: `/after-${i}` });
        assert.equal(visits[0].url, firstCode, "a code pooled before the restart is lent again");
        await everyCodeScans(s, visits);
      } finally {
        await s.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a WeChat that forgot its codes: the worker's pool replaces them instead of lending them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wxedge-forgot-"));
    try {
      let s = await startStack({}, { dir, followers: 2 });
      let old, followedAt;
      try {
        old = [];
        for (let i = 1; i <= 3; i++) old.push({ ...(await lend(s, i, `/old-${i}`)), page: `/old-${i}` });
        await everyCodeScans(s, old);
        followedAt = Date.now();
      } finally {
        await s.stop();
      }
      // The simulator's state alone wiped: WeChat no longer knows the pooled codes.
      rmSync(join(dir, "state", "wxedge-sim.json"));
      s = await startStack({}, { dir, followers: 2 });
      try {
        for (const o of old) {
          const gone = await s.sim("/sim/scan", { url: o.url });
          assert.equal(gone.errcode, 90002, "a code WeChat does not know is answered as an expired one");
          assert.match(gone.errmsg, /已过期|expired/);
        }
        // Once the followed codes are free again, lend: each dropped one is replaced, not lent.
        await sleep(Math.max(0, followedAt + 32_000 - Date.now()));
        const visits = [];
        for (let i = 21; i <= 24; i++) visits.push({ ...(await lend(s, i, `/fresh-${i}`)), page: `/fresh-${i}` });
        const reused = visits.filter((v) => old.some((o) => o.url === v.url));
        assert.deepEqual(reused, [], "no dropped code is lent again");
        await everyCodeScans(s, visits);
        assert.equal(s.logs.join("").match(/is unknown to WeChat; replacing it/g)?.length, 3, "each dropped code replaced once");
      } finally {
        await s.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
