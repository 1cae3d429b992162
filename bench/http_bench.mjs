// The same callbacks over loopback HTTP: our worker in workerd (wrangler dev, local KV, the
// ledger object) vs wechatpy behind a minimal Python server vs co-wechat behind Koa vs
// node-webot's wechat behind node's http server. wrk at a fixed concurrency; each server answers
// every distinct text message with a text reply. Prints JSON {name: {rps, p50_ms, p99_ms}}.
// Usage: node bench/http_bench.mjs PYTHON [SECONDS] [CONNECTIONS]
import { spawn, execFileSync } from "node:child_process";
import { join } from "node:path";
import { mkdirSync, writeFileSync } from "node:fs";
import { startStack, freePort, signedQuery, sha1Signature, ROOT } from "../tests/support/stack.mjs";

const [python, seconds = "5", connections = "16"] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TOKEN = "benchtoken", APPID = "wx00000000000000b1";
mkdirSync(join(ROOT, "target", "bench"), { recursive: true });

/** wrk against `url` (a callback path); every request signed afresh (bench/wrk_text.lua). */
function wrk(url) {
  // 2 threads × 100,000 queries, each with its own nonce, signed now (the worker refuses a
  // timestamp over 2 minutes old, and a query reused with another body).
  const file = join(ROOT, "target", "bench", "wrk_queries.txt");
  const ts = String(Math.floor(Date.now() / 1000));
  writeFileSync(file, Array.from({ length: 200_000 }, (_, i) => `signature=${sha1Signature(TOKEN, ts, String(i))}&timestamp=${ts}&nonce=${i}`).join("\n") + "\n");
  const out = execFileSync("wrk", ["-t2", `-c${connections}`, `-d${seconds}s`, "--latency", "-s", join(ROOT, "bench", "wrk_text.lua"), url.split("?")[0], "--", file], { encoding: "utf8" });
  const ms = (v, unit) => Number(v) * ({ us: 0.001, ms: 1, s: 1000 }[unit] ?? 1);
  const pct = (p) => { const m = out.match(new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`)); return m ? ms(m[1], m[2]) : null; };
  const non2xx = Number((out.match(/Non-2xx or 3xx responses: (\d+)/) || [0, 0])[1]);
  const errors = out.match(/Socket errors: (.*)/);
  return { rps: Number(out.match(/Requests\/sec:\s+([\d.]+)/)[1]), p50_ms: pct(50), p99_ms: pct(99), non_2xx: non2xx, socket_errors: errors ? errors[1] : null };
}

async function waitFor(url) {
  for (let i = 0; i < 100; i++) {
    try { await fetch(url, { method: "POST", body: "" }); return; } catch { await sleep(100); }
  }
  throw new Error(`${url} did not start`);
}

async function peer(name, cmd, args) {
  const port = await freePort();
  const child = spawn(cmd, [...args.map((a) => String(a).replace("PORT", port))], { cwd: join(ROOT, "bench"), stdio: ["ignore", "ignore", "inherit"] });
  try {
    const base = `http://127.0.0.1:${port}/wechat`;
    await waitFor(base);
    const url = `${base}?${signedQuery(TOKEN)}`;
    const check = await fetch(url, { method: "POST", body: "<xml><ToUserName>gh</ToUserName><FromUserName>oCheck</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>1</MsgId></xml>" });
    const reply = await check.text();
    if (!reply.includes("hello back")) throw new Error(`${name} answered ${check.status}: ${reply.slice(0, 200)}`);
    return wrk(url);
  } finally {
    child.kill("SIGTERM");
  }
}

const results = {};
const s = await startStack({ WECHAT_TOKEN: TOKEN, WECHAT_APPID: APPID, WECHAT_APPSECRET: "bench" });
try {
  const put = await fetch(`${s.base}/api/admin/rules`, {
    method: "PUT", headers: { authorization: `Bearer ${s.config.ADMIN_TOKEN}` },
    body: JSON.stringify({ default: { type: "text", content: "hello back" } }),
  });
  if (put.status !== 200) throw new Error("rules: " + (await put.text()));
  const url = `${s.base}/wechat?${signedQuery(TOKEN)}`;
  await fetch(url, { method: "POST", body: "<xml><ToUserName>gh</ToUserName><FromUserName>oWarm</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>2</MsgId></xml>" });
  results.wxedge = wrk(url);
  // The same stack answering GET /api/health (no KV, no ledger): what wrangler dev's local
  // runtime costs by itself, for reading the row above.
  const health = execFileSync("wrk", ["-t2", `-c${connections}`, `-d${seconds}s`, "--latency", `${s.base}/api/health`], { encoding: "utf8" });
  results["wxedge: GET /api/health (no storage)"] = { rps: Number(health.match(/Requests\/sec:\s+([\d.]+)/)[1]), p50_ms: null, p99_ms: null, non_2xx: 0, socket_errors: null };
} finally {
  await s.stop();
}
results.wechatpy = await peer("wechatpy", python, [join(ROOT, "bench", "wechatpy_server.py"), "PORT", TOKEN]);
results["co-wechat"] = await peer("co-wechat", process.execPath, [join(ROOT, "bench", "co_wechat_server.mjs"), "PORT", TOKEN, APPID]);
results.wechat = await peer("wechat", process.execPath, [join(ROOT, "bench", "wechat_server.mjs"), "PORT", TOKEN, APPID]);
console.log(JSON.stringify(results));
