// Starts the real local stack for a test: the WeChat simulator and the worker under
// `wrangler dev` (workerd, local KV in a fresh temp dir), each on a free loopback port.
import { spawn, execFileSync } from "node:child_process";
import { createHash, createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const SIM = join(ROOT, "target", "release", "wxedge-sim");

export const TEST_CONFIG = {
  WECHAT_APPID: "wx00000000000000a1",
  WECHAT_APPSECRET: "test-appsecret",
  WECHAT_TOKEN: "testtoken123",
  WECHAT_ACCOUNT_KIND: "service",
  ADMIN_TOKEN: "test-admin-token-0123456789",
  WELCOME_TEXT: "Welcome to the test account",
};
export const AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts simulator + worker. `vars` override TEST_CONFIG; a value of null removes a setting. */
export async function startStack(vars = {}, { followers = 20, dir: keepDir } = {}) {
  const [port, simPort] = [await freePort(), await freePort()];
  // A given `dir` holds the local KV and Durable Object state across restarts.
  const dir = keepDir ?? mkdtempSync(join(tmpdir(), "wxedge-test-"));
  const config = { ...TEST_CONFIG, WECHAT_API_BASE: `http://127.0.0.1:${simPort}`, ...vars };
  for (const k of Object.keys(config)) if (config[k] === null) delete config[k];
  const envFile = join(dir, "test.env");
  writeFileSync(envFile, Object.entries(config).map(([k, v]) => `${k}="${v}"`).join("\n") + "\n");

  const logs = [];
  const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };
  const sim = spawn(SIM, [
    "serve", "--port", String(simPort), "--appid", config.WECHAT_APPID ?? "wx0", "--secret", config.WECHAT_APPSECRET ?? "x",
    "--env-file", envFile, "--callback-url", `http://127.0.0.1:${port}/wechat`, "--followers", String(followers),
    "--state", join(dir, "state"), // beside the worker's: a restart on the same `dir` finds both sides
  ], { stdio: ["ignore", "pipe", "pipe"] });
  // Both workers' configs for this stack: no build hook (make test built everything), the
  // Durable Objects' script with this stack's settings beside it.
  const [front, objects] = execFileSync(join(ROOT, "scripts", "stack-config.sh"), [join(dir, "cfg"), envFile, "--no-build"]).toString().trim().split("\n");
  const worker = spawn(join(ROOT, "node_modules", ".bin", "wrangler"), [
    "dev", "-c", front, "-c", objects, "--ip", "127.0.0.1", "--port", String(port), "--show-interactive-dev-session=false",
    "--env-file", envFile, "--persist-to", join(dir, "state"), "--log-level", "log",
  ], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"], detached: true }); // its own process group: wrangler and workerd stop together
  for (const p of [sim, worker]) {
    p.stdout.on("data", (d) => logs.push(d.toString()));
    p.stderr.on("data", (d) => logs.push(d.toString()));
  }
  const base = `http://127.0.0.1:${port}`;
  /** Stops both; `kill` sends SIGKILL (a crash); a given `dir` is kept for a restart. */
  const stop = async ({ kill = false } = {}) => {
    const exited = [worker, sim].map((p) => p.exitCode !== null ? null : new Promise((r) => p.once("exit", r)));
    const signal = kill ? "SIGKILL" : "SIGTERM";
    if (worker.exitCode === null) { try { process.kill(-worker.pid, signal); } catch { worker.kill(signal); } }
    if (sim.exitCode === null) sim.kill(signal);
    await Promise.all(exited);
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (worker.exitCode !== null) { await stop(); throw new Error("wrangler exited:\n" + logs.join("")); }
    try {
      await fetch(`${base}/api/health`);
      break; // any answer, even a configuration error, means workerd is serving
    } catch {
      if (Date.now() > deadline) { await stop(); throw new Error("worker did not start:\n" + logs.join("")); }
      await sleep(250);
    }
  }
  const simBase = `http://127.0.0.1:${simPort}`;
  /** The simulator's control API (`/sim/...`): GET without a body, POST with one. */
  const sim_ = async (path, body, method = body === undefined ? "GET" : "POST") => {
    const r = await fetch(simBase + path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    return r.json();
  };
  /** The worker's admin API with the test's ADMIN_TOKEN. */
  const admin = (path, init = {}) => fetch(`${base}/api/admin${path}`, {
    ...init,
    body: init.body === undefined || typeof init.body === "string" ? init.body : JSON.stringify(init.body),
    headers: { authorization: `Bearer ${config.ADMIN_TOKEN}`, "content-type": "application/json", ...(init.headers || {}) },
  });
  // `pgid`: wrangler's process group (wrangler and workerd), for measuring the stack's memory.
  return { base, simBase, config, logs, dir, stop, sim: sim_, admin, pgid: worker.pid };
}

export function sha1Signature(...parts) {
  return createHash("sha1").update([...parts].sort().join("")).digest("hex");
}

/** Query string WeChat would send for a plain callback. */
export function signedQuery(token, extra = {}) {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = String(Math.floor(Math.random() * 1e9));
  return new URLSearchParams({ signature: sha1Signature(token, timestamp, nonce), timestamp, nonce, ...extra });
}

// An independent implementation of WeChat's safe-mode crypto (node's OpenSSL with our own
// 32-byte PKCS#7), to check the worker against something it does not share code with.
function aesKey(encodingAesKey) { return Buffer.from(encodingAesKey + "=", "base64"); }

export function wechatEncrypt(encodingAesKey, appid, msg) {
  const key = aesKey(encodingAesKey);
  const body = Buffer.concat([randomBytes(16), Buffer.alloc(4), Buffer.from(msg), Buffer.from(appid)]);
  body.writeUInt32BE(Buffer.byteLength(msg), 16);
  const pad = 32 - (body.length % 32);
  const c = createCipheriv("aes-256-cbc", key, key.subarray(0, 16)).setAutoPadding(false);
  return Buffer.concat([c.update(Buffer.concat([body, Buffer.alloc(pad, pad)])), c.final()]).toString("base64");
}

export function wechatDecrypt(encodingAesKey, encrypted) {
  const key = aesKey(encodingAesKey);
  const d = createDecipheriv("aes-256-cbc", key, key.subarray(0, 16)).setAutoPadding(false);
  let plain = Buffer.concat([d.update(Buffer.from(encrypted, "base64")), d.final()]);
  plain = plain.subarray(0, plain.length - plain[plain.length - 1]);
  const len = plain.readUInt32BE(16);
  return { msg: plain.subarray(20, 20 + len).toString(), appid: plain.subarray(20 + len).toString() };
}

export function xmlField(xml, name) {
  const m = xml.match(new RegExp(`<${name}>(?:<!\\[CDATA\\[([\\s\\S]*?)\\]\\]>|([^<]*))</${name}>`));
  return m ? (m[1] ?? m[2]) : undefined;
}

export function subscribeXml({ from = "oFollower1", scene, createTime = Math.floor(Date.now() / 1000) } = {}) {
  return `<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[${from}]]></FromUserName>` +
    `<CreateTime>${createTime}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>` +
    `<EventKey><![CDATA[${scene ? "qrscene_" + scene : ""}]]></EventKey></xml>`;
}
