// CPU microseconds per callback (issue 14's `callback_cpu_us`): the same distinct, signed text
// messages (a fresh nonce each, one of 5,000 followers, answered with a text reply) sent to each
// server at the same concurrency, and the CPU its processes used (utime + stime from /proc,
// every process of the server's process group) divided by the requests answered.
// - wxedge: wrangler dev (workerd, local KV and Durable Objects: the replay cache, the follower
//   shard's claim and answer; every follower already known), minus a hello-world worker's CPU per
//   request under the same wrangler dev and the same load — the marginal CPU of wxedge's work, the
//   shard calls included; also only the workerd process that runs the workers, by the same rule;
// - the floor: the same hello-world making one (and three) calls to a JavaScript Durable Object
//   that writes one SQLite row, measured the same way — what object calls cost in this harness
//   whatever the code behind them;
// - wechatpy (Python http.server) and co-wechat (Koa): their process CPU per request.
// Usage: node bench/cpu_bench.mjs PYTHON [REQUESTS] [CONCURRENCY]; prints JSON.
import { spawn, execFileSync } from "node:child_process";
import { readFileSync, readdirSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack, freePort, sha1Signature, ROOT } from "../tests/support/stack.mjs";

const [python, requests = "3000", concurrency = "8"] = process.argv.slice(2);
const N = Number(requests), C = Number(concurrency);
const TOKEN = "benchtoken", APPID = "wx00000000000000b1";
const TICK_US = 1e6 / Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** CPU ticks used so far by every process whose process group is `pgid` (or the one `pid`),
 * in all and by process (named by what it runs: wrangler's node, the entry workerd — wrangler's
 * proxy in front — and the workerd running the workers and their objects). */
function ticks({ pgid, pid }) {
  let total = 0;
  const by = {};
  for (const p of pid ? [String(pid)] : readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    let stat, cmd;
    try { stat = readFileSync(`/proc/${p}/stat`, "utf8"); cmd = readFileSync(`/proc/${p}/cmdline`, "utf8"); } catch { continue; }
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields from the 3rd on
    if (pgid && Number(f[2]) !== pgid) continue;
    const t = Number(f[11]) + Number(f[12]); // utime, stime
    total += t;
    const name = !cmd.includes("workerd") ? cmd.split("\0")[0].split("/").pop() : cmd.includes("socket-addr=entry=127.0.0.1:0") ? "workerd (workers)" : "workerd (entry)";
    by[name] = (by[name] ?? 0) + t;
  }
  return { total, by };
}

let serial = 0;
/** One distinct text message under its own signed query, as WeChat sends them. */
function message() {
  const n = ++serial, ts = String(Math.floor(Date.now() / 1000)), nonce = `${process.pid}${n}`;
  const query = new URLSearchParams({ signature: sha1Signature(TOKEN, ts, nonce), timestamp: ts, nonce });
  const body = `<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[oBench${String(n % 5000).padStart(5, "0")}]]></FromUserName>` +
    `<CreateTime>${ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello]]></Content><MsgId>${9_000_000_000 + n}</MsgId></xml>`;
  return { query, body };
}

/** `n` messages at concurrency `C`; answers how many were answered 200. */
async function load(base, n) {
  let sent = 0, ok = 0;
  const worker = async () => {
    while (sent < n) {
      sent++;
      const { query, body } = message();
      const r = await fetch(`${base}?${query}`, { method: "POST", body });
      if (r.status === 200) ok++;
      await r.arrayBuffer();
    }
  };
  await Promise.all(Array.from({ length: C }, worker));
  return ok;
}

/** CPU µs per request of `who` (a process group or a pid) under `n` requests to `base`. */
async function measure(who, base, warm = 300) {
  await load(base, warm); // warm: JIT, isolates, connections (and for wxedge every follower known)
  const before = ticks(who);
  const start = Date.now();
  const ok = await load(base, N);
  const after = ticks(who);
  const cpu = (after.total - before.total) * TICK_US;
  if (ok < N * 0.99) throw new Error(`${base}: only ${ok} of ${N} answered 200`);
  const by_process = Object.fromEntries(Object.entries(after.by).map(([k, t]) => [k, Math.round((t - (before.by[k] ?? 0)) * TICK_US / ok)]));
  return { cpu_us: cpu / ok, requests: ok, wall_s: (Date.now() - start) / 1000, by_process };
}

async function waitFor(url) {
  for (let i = 0; i < 300; i++) {
    try { await fetch(url, { method: "POST", body: "" }); return; } catch { await sleep(100); }
  }
  throw new Error(`${url} did not start`);
}

/**
 * A hello-world worker under the same wrangler dev: answers every POST `success`. With `calls`,
 * it first makes that many calls to a Durable Object (JavaScript, SQLite-backed, one of 16 by the
 * nonce) that each write one row: the floor of what a push's object calls cost in this harness,
 * with no wasm, no protocol and no work of wxedge's.
 */
async function helloWorld(calls = 0) {
  const dir = mkdtempSync(join(tmpdir(), "wxedge-hello-"));
  writeFileSync(join(dir, "index.js"), `
export class Row {
  constructor(ctx) {
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS seen (k TEXT PRIMARY KEY, v TEXT, n INTEGER)");
  }
  async fetch(req) {
    const [k, v] = [new URL(req.url).searchParams.get("k"), await req.text()];
    this.sql.exec("INSERT INTO seen (k, v, n) VALUES (?, ?, 1) ON CONFLICT (k) DO UPDATE SET v = excluded.v, n = n + 1", k, v);
    return new Response("ok");
  }
}
export default {
  async fetch(req, env) {
    const body = await req.text();
    const nonce = new URL(req.url).searchParams.get("nonce") ?? "";
    const hash = [...nonce].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 0);
    for (let i = 0; i < ${calls}; i++) {
      const stub = env.ROW.get(env.ROW.idFromName("s" + ((hash + i) % 16)));
      await (await stub.fetch("https://row/?k=" + nonce + "-" + i, { method: "POST", body: body.slice(0, 200) })).text();
    }
    return new Response("success");
  },
};
`);
  writeFileSync(join(dir, "wrangler.toml"), `name = "hello"\nmain = "index.js"\ncompatibility_date = "2026-04-20"\n` +
    `[[durable_objects.bindings]]\nname = "ROW"\nclass_name = "Row"\n[[migrations]]\ntag = "v1"\nnew_sqlite_classes = ["Row"]\n`);
  const port = await freePort();
  const child = spawn(join(ROOT, "node_modules", ".bin", "wrangler"), ["dev", "--ip", "127.0.0.1", "--port", String(port), "--show-interactive-dev-session=false", "--persist-to", join(dir, "state")], {
    cwd: dir, env: { ...process.env, WRANGLER_SEND_METRICS: "false" }, stdio: ["ignore", "ignore", "inherit"], detached: true,
  });
  const base = `http://127.0.0.1:${port}/wechat`;
  try {
    await waitFor(base);
    return await measure({ pgid: child.pid }, base);
  } finally {
    try { process.kill(-child.pid, "SIGTERM"); } catch { child.kill("SIGTERM"); }
    await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

async function peer(cmd, args) {
  const port = await freePort();
  const child = spawn(cmd, args.map((a) => String(a).replace("PORT", port)), { cwd: join(ROOT, "bench"), stdio: ["ignore", "ignore", "inherit"] });
  try {
    const base = `http://127.0.0.1:${port}/wechat`;
    await waitFor(base);
    return await measure({ pid: child.pid }, base);
  } finally {
    child.kill("SIGTERM");
  }
}

const s = await startStack({ WECHAT_TOKEN: TOKEN, WECHAT_APPID: APPID, WECHAT_APPSECRET: "bench" });
let wxedge;
try {
  const put = await s.admin("/rules", { method: "PUT", body: { default: { type: "text", content: "hello back" } } });
  if (put.status !== 200) throw new Error("rules: " + (await put.text()));
  const { query, body } = message();
  const check = await (await fetch(`${s.base}/wechat?${query}`, { method: "POST", body })).text();
  if (!check.includes("hello back")) throw new Error(`wxedge answered ${check.slice(0, 200)}`);
  // Warmed with one message from each of the 5,000 followers: measured is a push from a follower
  // wxedge knows (its shard has their row), not each follower's first contact (an import into
  // the index, the old layout's KV read), which happens once per follower.
  wxedge = await measure({ pgid: s.pgid }, `${s.base}/wechat`, 5000);
} finally {
  await s.stop();
}
const hello = await helloWorld();
// The floor of a push's object calls in this harness: one call (the one atomic shard
// call), and three (wxedge's plain-mode push: the replay cache, the claim, the answer).
const oneCall = await helloWorld(1);
const threeCalls = await helloWorld(3);
const wechatpy = await peer(python, [join(ROOT, "bench", "wechatpy_server.py"), "PORT", TOKEN]);
const cowechat = await peer(process.execPath, [join(ROOT, "bench", "co_wechat_server.mjs"), "PORT", TOKEN, APPID]);
console.log(JSON.stringify({
  wxedge: wxedge.cpu_us - hello.cpu_us,
  "co-wechat": cowechat.cpu_us,
  wechatpy: wechatpy.cpu_us,
  wxedge_process: wxedge.cpu_us,
  hello_world_process: hello.cpu_us,
  // Marginal CPU of a hello-world worker's object calls, each writing one SQLite row (JavaScript).
  one_object_call_floor: oneCall.cpu_us - hello.cpu_us,
  three_object_calls_floor: threeCalls.cpu_us - hello.cpu_us,
  // The narrowest reading: only the workerd process that runs the workers and their objects
  // (wrangler's node and its proxy workerd left out), minus the hello-world's in it.
  wxedge_workers_workerd: wxedge.by_process["workerd (workers)"] - hello.by_process["workerd (workers)"],
  one_object_call_floor_workers_workerd: oneCall.by_process["workerd (workers)"] - hello.by_process["workerd (workers)"],
  // µs per request by process, for each stack measured.
  by_process: { wxedge: wxedge.by_process, hello_world: hello.by_process, one_object_call: oneCall.by_process, three_object_calls: threeCalls.by_process },
  requests: N, concurrency: C,
}));
