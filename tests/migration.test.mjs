// The upgrade to the follower shards (issue 14) on state the previous layout left: the ledger
// object's index holds the followers, the shards hold nothing. On its first start the ledger
// moves its index into the shards by itself (its alarm, a few of its shards a step); a second run
// changes nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { startStack } from "./support/stack.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const PYTHON = process.env.WXEDGE_PYTHON || "python3";

/** Every file below `dir`. */
function files(dir) {
  return readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)]));
}

async function migrated(s) {
  for (let i = 0; i < 100; i++) {
    const r = await s.admin("/followers/migration");
    const m = await r.json();
    assert.equal(r.status, 200, JSON.stringify(m));
    if (m.done) return m;
    await sleep(100);
  }
  assert.fail("the migration did not finish");
}

const exactAll = async (s) => (await (await s.admin("/broadcasts/plan", { method: "POST", body: { segment: { kind: "all" }, exact: true } })).json());

test("the ledger's index moves into empty follower shards on its first start, once", async () => {
  const dir = mkdtempSync(join(tmpdir(), "wxedge-migrate-"));
  try {
    // The previous layout's state: followers imported into the ledger, a few followed since.
    let s = await startStack({}, { followers: 25, dir });
    try {
      for (let i = 0; i < 5; i++) {
        const step = await (await s.admin("/followers/import", { method: "POST", body: {} })).json();
        if (step.done) break;
      }
      const qr = await (await s.admin("/qr", { method: "POST", body: { scene: "expo", expire_seconds: 3600 } })).json();
      for (let i = 0; i < 3; i++) assert.equal((await s.sim("/sim/scan", { url: qr.url })).status, 200);
      const plan = await exactAll(s);
      assert.equal(plan.eligible, 28);
      await migrated(s);
    } finally {
      await s.stop();
    }
    // Back to what the previous version left: no follower shards, no migration cursor.
    const state = join(dir, "state");
    const shardFiles = files(state).filter((f) => f.includes("FollowerShard"));
    assert.ok(shardFiles.length > 0, "the shards had been written: " + files(state).join(", "));
    for (const f of shardFiles) rmSync(f, { force: true });
    const ledgers = files(state).filter((f) => f.includes("Ledger") && f.endsWith(".sqlite") && !f.endsWith("metadata.sqlite"));
    assert.equal(ledgers.length, 1, ledgers.join(", "));
    execFileSync(PYTHON, ["-c", "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute(\"DELETE FROM _cf_KV WHERE key = 'migrate'\"); db.commit()", ledgers[0]]);

    s = await startStack({}, { followers: 25, dir });
    try {
      const before = await exactAll(s); // the ledger's first request starts the move
      assert.equal(before.eligible, 28, "the ledger's index survived");
      const m = await migrated(s);
      assert.equal(m.followers, 28, JSON.stringify(m));
      const after = await exactAll(s);
      assert.deepEqual(after.shards, { followers: 28, reachable: 28, by_used: [28, 0, 0, 0, 0] }, "the shards hold everyone the ledger did");
      const scene = await (await s.admin("/broadcasts/plan", { method: "POST", body: { segment: { kind: "scene", scene: "expo" }, exact: true } })).json();
      assert.equal(scene.shards.followers, 3, "with their scenes");
    } finally {
      await s.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
