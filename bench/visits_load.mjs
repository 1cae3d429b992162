// What one visits shard holds: open dialogs polling their visit (`GET /api/qr/{visit}`, what
// the widget does once a second) as fast as they can, against one shard and against eight, on
// the local stack (wrangler dev: workerd, local Durable Objects). Prints polls/s and latency.
import { startStack } from "../tests/support/stack.mjs";

const seconds = Number(process.argv[2] || 5);
const dialogs = Number(process.argv[3] || 64);
const results = {};
for (const shards of [1, 8]) {
  const s = await startStack({ VISIT_SHARDS: String(shards), FOLLOW_QR_URL: "http://weixin.qq.com/r/bench" });
  try {
    const visits = [];
    for (let i = 0; visits.length < dialogs; i++) {
      const r = await (await fetch(`${s.base}/api/qr`, { method: "POST", headers: { "cf-connecting-ip": `198.18.${i >> 8}.${i & 255}` }, body: JSON.stringify({ page: "/", scene: "load" }) })).json();
      if (r.visit) visits.push(r.visit);
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
  } finally {
    await s.stop();
  }
}
console.log(JSON.stringify(results));
