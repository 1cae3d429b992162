// Callbacks served by the worker in workerd (wrangler dev, local KV) over loopback: sequential,
// so the latency is an upper bound of the CPU each callback costs (it includes HTTP and KV).
import { startStack, signedQuery, subscribeXml } from "../tests/support/stack.mjs";

const n = Number(process.argv[2] || 1000);
const s = await startStack();
try {
  const times = [];
  const run = async (i) => {
    const body = subscribeXml({ from: `oBench${i}`, scene: "pricing", createTime: 1700000000 + i });
    const t0 = process.hrtime.bigint();
    const r = await fetch(`${s.base}/wechat?${signedQuery(s.config.WECHAT_TOKEN)}`, { method: "POST", body });
    const text = await r.text();
    if (r.status !== 200 || !text.includes("<Content>")) throw new Error(`unexpected ${r.status} ${text}`);
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  for (let i = 0; i < 50; i++) await run(-1 - i); // warm the isolate
  for (let i = 0; i < n; i++) times.push(await run(i));
  times.sort((a, b) => a - b);
  const mean = times.reduce((a, b) => a + b, 0) / n;
  console.log(JSON.stringify({ requests: n, mean_ms: mean, p50_ms: times[Math.floor(n * 0.5)], p99_ms: times[Math.floor(n * 0.99)] }));
} finally {
  await s.stop();
}
