// The upgrade to the follower shards (issue 14) on state the previous layout left: the ledger
// object's index holds the followers (256 JSON shards `fs:000`…, as the version before the shards
// wrote them), the shards hold nothing. On its first start the ledger moves its index into the
// shards by itself (its alarm, a few of its shards a step); a second run changes nothing.
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

const exactPlan = async (s, segment) => (await (await s.admin("/broadcasts/plan", { method: "POST", body: { segment, exact: true } })).json());

/** The ledger's shard of an OpenID in the layout before the follower shards: FNV-1a, 256. */
function legacyShard(openid) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(openid)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h % 256;
}

/** China month (YYYYMM) of now. */
function chinaMonth() {
  const d = new Date(Date.now() + 8 * 3600 * 1000);
  return d.getUTCFullYear() * 100 + d.getUTCMonth() + 1;
}

// Writes string values into a Durable Object's storage file as workerd keeps them (V8's
// serialization: the header of an existing string value, then '"', the length, the bytes).
const WRITE_KV = `
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
(sample,) = db.execute("SELECT value FROM _cf_KV WHERE key = 'import'").fetchone()
sample = bytes(sample)
def read_varint(b, i):
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i
tag = sample.index(b'"')
length, start = read_varint(sample, tag + 1)
assert len(sample) - start == length, "not a one-byte string"
header = sample[:tag]
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
for key, value in json.loads(sys.argv[2]).items():
    raw = value.encode("ascii")
    db.execute("INSERT OR REPLACE INTO _cf_KV (key, value) VALUES (?, ?)", (key, header + b'"' + varint(len(raw)) + raw))
db.execute("DELETE FROM _cf_KV WHERE key = 'migrate'")
db.commit()
`;

test("the ledger's index moves into empty follower shards on its first start, once", async () => {
  const dir = mkdtempSync(join(tmpdir(), "wxedge-migrate-"));
  try {
    // 25 followers imported and 3 who followed from the expo.
    let s = await startStack({}, { followers: 25, dir });
    let everyone, expo;
    try {
      for (let i = 0; i < 5; i++) {
        const step = await (await s.admin("/followers/import", { method: "POST", body: {} })).json();
        if (step.done) break;
      }
      const qr = await (await s.admin("/qr", { method: "POST", body: { scene: "expo", expire_seconds: 3600 } })).json();
      expo = [];
      for (let i = 0; i < 3; i++) {
        const scan = await s.sim("/sim/scan", { url: qr.url });
        assert.equal(scan.status, 200);
        expo.push(scan.openid);
      }
      everyone = (await s.sim("/sim/followers?offset=0&limit=100")).followers.map((f) => f.openid);
      assert.equal(everyone.length, 28);
      await migrated(s);
    } finally {
      await s.stop();
    }
    // Back to what the previous version left: no follower shards, no migration cursor, and the
    // ledger's index — the expo's three with one mass message this month.
    const state = join(dir, "state");
    const shardFiles = files(state).filter((f) => f.includes("FollowerShard"));
    assert.ok(shardFiles.length > 0, "the shards had been written: " + files(state).join(", "));
    for (const f of shardFiles) rmSync(f, { force: true });
    const ledgers = files(state).filter((f) => f.includes("Ledger") && f.endsWith(".sqlite") && !f.endsWith("metadata.sqlite"));
    assert.equal(ledgers.length, 1, ledgers.join(", "));
    const month = chinaMonth();
    const legacy = {};
    for (const openid of everyone) {
      const key = `fs:${String(legacyShard(openid)).padStart(3, "0")}`;
      legacy[key] ??= { f: {}, m: month, c: {} };
      const atExpo = expo.includes(openid);
      legacy[key].f[openid] = atExpo ? { f: true, s: "expo", a: 1_790_000_000 } : { f: true, a: 1_790_000_000 };
      if (atExpo) legacy[key].c[openid] = 1;
    }
    const values = Object.fromEntries(Object.entries(legacy).map(([k, v]) => [k, JSON.stringify(v)]));
    execFileSync(PYTHON, ["-c", WRITE_KV, ledgers[0], JSON.stringify(values)]);

    s = await startStack({}, { followers: 25, dir });
    try {
      await exactPlan(s, { kind: "all" }); // the ledger's first request starts the move
      const m = await migrated(s);
      assert.equal(m.followers, 28, JSON.stringify(m));
      const all = await exactPlan(s, { kind: "all" });
      assert.deepEqual([all.eligible, all.at_quota, all.source], [28, 0, "shards"], "the shards hold everyone the ledger did");
      assert.equal((await exactPlan(s, { kind: "scene", scene: "expo" })).eligible, 3, "with their scenes");
      const view = await (await s.admin(`/followers/${expo[0]}`)).json();
      assert.deepEqual([view.index.scene, view.mass_this_month], ["expo", 1], "and their month's count");
      assert.deepEqual((await (await s.admin("/quota")).json()).left, [0, 0, 0, 3, 25]);
    } finally {
      await s.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
