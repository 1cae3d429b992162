// What one visits shard holds, on the local stack (wrangler dev: workerd, local Durable Objects):
// - polls: open dialogs polling their visit (`GET /api/qr/{visit}`, the fallback the widget uses
//   when its WebSocket cannot open) as fast as they can, against one shard and against eight;
// - sockets: SOCKETS open dialogs' WebSockets (`/api/qr/{visit}/live`, hibernating) held by one
//   shard: the time to open them, the stack's memory per socket, and how soon a scan reaches the
//   dialogs of its visit. Run with `node --experimental-websocket` on Node 20.
import { execFileSync } from "node:child_process";
import { startStack } from "../tests/support/stack.mjs";

const seconds = Number(process.argv[2] || 5);
const dialogs = Number(process.argv[3] || 64);
const socketCount = Number(process.argv[4] || 2000);
const results = {};
for (const shards of [1, 8]) {
  const s = await startStack({ VISIT_SHARDS: String(shards), FOLLOW_QR_URL: "http://weixin.qq.com/r/bench" });
  try {
    const visits = [], urls = new Map();
    for (let i = 0; visits.length < dialogs; i++) {
      const r = await (await fetch(`${s.base}/api/qr`, { method: "POST", headers: { "cf-connecting-ip": `198.18.${i >> 8}.${i & 255}` }, body: JSON.stringify({ page: "/", scene: "load" }) })).json();
      if (r.visit) { visits.push(r.visit); urls.set(r.visit, r.url); }
    }
    const times = [];
    let errors = 0;
    const until = Date.now() + seconds * 1000;
    await Promise.all(visits.map(async (v) => {
      while (Date.now() < until) {
        const t0 = performance.now();
        const r = await fetch(`${s.base}/api/qr/${v}`);
        await r.arrayBuffer();
        if (r.status !== 200) errors++;
        times.push(performance.now() - t0);
      }
    }));
    times.sort((a, b) => a - b);
    const used = new Set(visits.map((v) => v[0])).size;
    results[`shards_${shards}`] = { dialogs, shards_used: used, polls_per_s: times.length / seconds, p50_ms: times[Math.floor(times.length / 2)], p99_ms: times[Math.floor(times.length * 0.99)], errors };
    if (shards === 1) results.sockets = await sockets(s, visits, urls);
  } finally {
    await s.stop();
  }
}
console.log(JSON.stringify(results));

/** Opens `socketCount` dialogs' sockets spread over `visits` (all on one shard), then scans one. */
async function sockets(s, visits, urls) {
  const rss = () => execFileSync("ps", ["-o", "rss=", "-g", String(s.pgid)]).toString().split("\n").filter(Boolean).reduce((a, b) => a + Number(b), 0) * 1024;
  const before = rss();
  const t0 = performance.now();
  const open = [];
  for (let i = 0; i < socketCount; i += 100) {
    open.push(...await Promise.all(Array.from({ length: Math.min(100, socketCount - i) }, (_, j) => new Promise((resolve, reject) => {
      const visit = visits[(i + j) % visits.length];
      const ws = new WebSocket(`${s.base.replace("http", "ws")}/api/qr/${visit}/live`);
      ws.onmessage = (e) => { ws.last = JSON.parse(e.data).state; if (ws.last === "followed") ws.followedAt = performance.now(); };
      ws.onopen = () => resolve(Object.assign(ws, { visit }));
      ws.onerror = () => reject(new Error("socket failed"));
    }))));
  }
  const openMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 1000));
  const perSocket = (rss() - before) / socketCount;
  // A scan of the first visit's code reaches every dialog listening to it.
  const target = visits[0];
  const listening = open.filter((ws) => ws.visit === target);
  const tScan = performance.now();
  await s.sim("/sim/scan", { url: urls.get(target) });
  for (let i = 0; i < 100 && listening.some((ws) => !ws.followedAt); i++) await new Promise((r) => setTimeout(r, 20));
  const reached = listening.filter((ws) => ws.followedAt).map((ws) => ws.followedAt - tScan).sort((a, b) => a - b);
  for (const ws of open) ws.close();
  return { sockets: socketCount, open_ms: openMs, stack_bytes_per_socket: Math.round(perSocket), listening: listening.length, reached: reached.length, scan_to_all_ms: reached[reached.length - 1] };
}
