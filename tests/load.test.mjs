// Load: 20,000 callbacks (follows from five scenes, messages, menu clicks, WeChat-style retries)
// through the local stack, 16 at a time. Afterwards every follow is recorded exactly once, every
// retry got the identical answer, and the log has no error. LOAD_CALLBACKS changes the count.
// The rate is printed, not asserted: speed targets live in `make bench`.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startStack, signedQuery, xmlField } from "./support/stack.mjs";

const N = Number(process.env.LOAD_CALLBACKS || 20000);
const SCENES = ["s0", "s1", "s2", "s3", "s4"];
const CONCURRENCY = 16;

describe(`load: ${N} callbacks`, () => {
  let s;
  before(async () => {
    s = await startStack({}, { followers: 0 });
    const rules = {
      welcome: { scenes: Object.fromEntries(SCENES.map((k) => [k, { type: "text", content: `welcome via ${k}` }])) },
      keywords: [{ match: "exact", pattern: "hi", reply: { type: "text", content: "hello" } }],
      clicks: { MENU_X: { type: "text", content: "clicked" } },
    };
    assert.equal((await s.admin("/rules", { method: "PUT", body: rules })).status, 200);
  });
  after(async () => { await s?.stop(); });

  test("every follow recorded once, every retry answered identically, no error logged", async () => {
    const T0 = Math.floor(Date.now() / 1000);
    const followers = []; // whose follow has been answered: they message and click from then on
    let follows = 0;
    const expected = Object.fromEntries(SCENES.map((k) => [k, 0]));
    const answered = []; // {body, reply, from} of completed first deliveries
    // One follower's pushes come from one phone, one after another; WeChat's retries come within
    // seconds of the original. The load keeps both true.
    const busy = new Set();
    const idle = (k) => { for (let j = 0; j < followers.length; j++) { const f = followers[(k + j) % followers.length]; if (!busy.has(f)) return f; } return null; };
    let retries = 0, mismatches = [], failures = [];
    const post = async (body) => {
      const r = await fetch(`${s.base}/wechat?${signedQuery(s.config.WECHAT_TOKEN)}`, { method: "POST", body });
      return { status: r.status, text: await r.text() };
    };
    const xml = (from, t, inner) => `<xml><ToUserName><![CDATA[gh_load]]></ToUserName><FromUserName><![CDATA[${from}]]></FromUserName><CreateTime>${t}</CreateTime>${inner}</xml>`;
    const make = (i, forceFollow = false) => {
      const kind = i % 10;
      if (forceFollow || kind < 3 || (followers.length === 0 && kind !== 9)) {
        const scene = SCENES[i % SCENES.length];
        const from = `oLoad${String(i).padStart(6, "0")}`;
        expected[scene]++;
        follows++;
        return { follower: from, from, body: xml(from, T0, `<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_${scene}]]></EventKey>`), expect: `welcome via ${scene}` };
      }
      const from = idle((i * 7919) % followers.length);
      if (!from) return make(i, true);
      if (kind < 8) return { from, body: xml(from, T0 + i, `<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${i % 2 ? "hi" : "something else"}]]></Content><MsgId>${7000000000 + i}</MsgId>`), expect: i % 2 ? "hello" : null };
      if (kind === 8) return { from, body: xml(from, T0 + i, `<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[MENU_X]]></EventKey>`), expect: "clicked" };
      return null; // a retry, chosen when its turn comes
    };
    let next = 0;
    const started = Date.now();
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= N) return;
        const d = make(i) ?? (answered.length === 0 ? make(i, true) : null);
        if (!d) {
          const recent = answered.slice(-64).filter((a) => !busy.has(a.from));
          const first = recent[(i * 104729) % Math.max(1, recent.length)];
          if (!first) continue;
          busy.add(first.from);
          const again = await post(first.body);
          busy.delete(first.from);
          retries++;
          if (again.status !== 200 || again.text !== first.reply) mismatches.push({ first: first.reply.slice(0, 120), again: again.text.slice(0, 120) });
          continue;
        }
        busy.add(d.from);
        const r = await post(d.body);
        busy.delete(d.from);
        if (r.status !== 200) { failures.push(`${r.status} ${r.text.slice(0, 120)}`); continue; }
        if (d.expect && xmlField(r.text, "Content") !== d.expect) failures.push(`expected ${d.expect}, got ${r.text.slice(0, 160)}`);
        if (!d.expect && r.text !== "success") failures.push(`expected success, got ${r.text.slice(0, 120)}`);
        answered.push({ body: d.body, reply: r.text, from: d.from });
        if (d.follower) followers.push(d.follower);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const secs = (Date.now() - started) / 1000;
    console.log(`load: ${N} callbacks (${follows} follows, ${retries} retries) in ${secs.toFixed(1)} s = ${(N / secs).toFixed(0)}/s at concurrency ${CONCURRENCY}`);
    assert.deepEqual(failures.slice(0, 5), []);
    assert.deepEqual(mismatches.slice(0, 5), []);
    assert.ok(retries >= N / 20, `${retries} retries`);

    const stats = await (await s.admin("/stats?days=2")).json();
    const got = Object.fromEntries(SCENES.map((k) => [k, Object.values(stats).reduce((n, d) => n + (d.follows?.[k] ?? 0), 0)]));
    assert.deepEqual(got, expected, "each follow counted exactly once, per scene");
    const quota = await (await s.admin("/quota")).json();
    assert.equal(followers.length, follows);
    assert.equal(quota.followers, follows, "each follower in the index once");
    await new Promise((r) => setTimeout(r, 1500)); // the ledger mirrors follow bursts to KV after 1 s
    for (const from of [followers[0], followers[followers.length >> 1], followers.at(-1)]) {
      const v = await (await s.admin(`/followers/${from}`)).json();
      assert.equal(v.record.follows, 1, `${from} followed once`);
      assert.equal(v.index.following, true);
    }
    const errors = s.logs.join("").split("\n").filter((l) => /✘|\[ERROR\]|panicked|Uncaught|RuntimeError|Reinitializing/.test(l));
    assert.deepEqual(errors.slice(0, 5), []);
  });
});
