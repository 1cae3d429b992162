// The public edge against hostile visitors and forged pushes (issue 13): each attack as it would
// come, and what must still hold afterwards — real visitors get a code, no code is spent for
// nothing, memory stays flat, quotas stay intact, the owner's welcomes stay the owner's.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import http from "node:http";
import { startStack, signedQuery, subscribeXml, xmlField } from "./support/stack.mjs";

const ORDINARY = "http://weixin.qq.com/r/acme-ordinary";

describe("hostile visitors and forged pushes", () => {
  let s;
  before(async () => {
    s = await startStack({ FOLLOW_QR_URL: ORDINARY });
    const rules = {
      welcome: {
        scenes: { "vip-coupon": { type: "text", content: "Your VIP coupon: 50% off" }, home: { type: "text", content: "Welcome home" } },
        widget_scenes: ["home"],
      },
    };
    assert.equal((await s.admin("/rules", { method: "PUT", body: rules })).status, 200);
  });
  after(async () => { await s?.stop(); });

  const codesMade = async () => (await s.sim("/sim/status")).qrcodes.total;
  const askCode = (ip, scene = "home") =>
    fetch(`${s.base}/api/qr`, { method: "POST", headers: { "cf-connecting-ip": ip }, body: JSON.stringify({ page: "/", scene }) }).then(async (r) => ({ status: r.status, ...(await r.json()) }));

  test("600 addresses of one IPv6 /64 get ten codes between them; a real visitor still gets one", async () => {
    // Limits count per minute: run inside one.
    const intoMinute = (Date.now() / 1000) % 60;
    if (intoMinute > 40) await new Promise((r) => setTimeout(r, (61 - intoMinute) * 1000));
    const before = await codesMade();
    const answers = [];
    for (let i = 0; i < 600; i += 30) {
      answers.push(...await Promise.all(Array.from({ length: 30 }, (_, j) => askCode(`2001:db8:77:1:${(i + j).toString(16)}::${j + 1}`))));
    }
    assert.ok(answers.every((a) => a.status === 200), "never an error, never a blank");
    const lent = answers.filter((a) => a.visit);
    assert.equal(lent.length, 10, "one /64 is one visitor");
    assert.ok(answers.filter((a) => !a.visit).every((a) => a.static && a.url === ORDINARY && a.why === "rate_limited"));
    assert.equal(await codesMade() - before, 10, "no code made for the other 590");
    const real = await askCode("198.51.100.23");
    assert.ok(real.visit && real.url !== ORDINARY, "a visitor elsewhere gets a pooled code");
  });

  test("20 hotlinked qr.svg images spend no code and draw the ordinary one", async () => {
    const before = await codesMade();
    const ordinary = await (await fetch(`${s.base}/api/qr.svg`)).text();
    for (let i = 0; i < 20; i++) {
      const r = await fetch(`${s.base}/api/qr.svg?page=/hot&scene=hot${i}`, { headers: { referer: "https://hotlinker.example/", "cf-connecting-ip": `203.0.113.${i}` } });
      assert.equal(r.status, 200);
      assert.equal(await r.text(), ordinary);
    }
    assert.equal((await fetch(`${s.base}/api/qr.svg?visit=0123456789abcdef01234567`)).status, 200, "an unknown visit also gets the ordinary code");
    assert.equal(await codesMade(), before, "no code spent");
  });

  test("a 100 MB chunked POST is refused with 413 while it streams; memory stays flat", async () => {
    const rss = () => Number(execFileSync("ps", ["-o", "rss=", "-g", String(s.pgid)]).toString().split("\n").filter(Boolean).reduce((a, b) => a + Number(b), 0)) * 1024;
    // What an attacker sends: chunked (no Content-Length), 64 KiB at a time, up to 100 MB,
    // on its own connection; stops once an answer arrives.
    const chunk = Buffer.alloc(64 * 1024, 97);
    const upload = (path) => new Promise((resolve, reject) => {
      const req = http.request(`${s.base}${path}`, { method: "POST", agent: false, headers: { "transfer-encoding": "chunked" } });
      let sent = 0, answered = false;
      // wrangler dev's proxy may also hold a cut-short upload's connection open without an
      // answer: after 15 s the attempt is given up (and tried again below).
      const stall = setTimeout(() => { if (!answered) { answered = true; resolve({ stalled: true, sent }); req.destroy(); } }, 15_000);
      req.on("close", () => clearTimeout(stall));
      req.on("response", (res) => { answered = true; res.resume(); resolve({ status: res.statusCode, sent }); req.destroy(); });
      // The worker answers and closes mid-upload: the client may see the reset before the 413.
      req.on("error", (e) => { if (!answered) { answered = true; e.code === "ECONNRESET" || e.code === "EPIPE" ? resolve({ reset: true, sent }) : reject(e); } });
      const pump = () => {
        while (!answered && sent < 100 * 1024 * 1024) {
          sent += chunk.length;
          if (!req.write(chunk)) return req.once("drain", pump);
        }
        if (!answered) req.end();
      };
      pump();
    });
    // After an upload cut short, wrangler dev's proxy may leave the next request on that
    // connection unanswered: each reading has 10 s, and is tried again.
    const wasm = async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await s.admin("/health", { signal: AbortSignal.timeout(10_000) });
          return (await r.json()).wasm_memory_bytes;
        } catch (e) {
          if (attempt >= 4) throw e;
        }
      }
    };
    const [before, wasmBefore] = [rss(), await wasm()];
    const refusals = (path) => s.logs.join("").split(`POST ${path.split("?")[0]} 413`).length - 1;
    for (const path of [`/wechat?${signedQuery(s.config.WECHAT_TOKEN)}`, "/api/events", "/api/qr"]) {
      // wrangler dev's local proxy in front of the worker sometimes answers a request that
      // follows an upload cut short with its own 503 ("restarted mid-request"); production has
      // no such hop (and the worker logs no error for them); about half the attempts here. Each
      // path is tried until the worker itself has answered 413, at most 20 times.
      const had = refusals(path);
      for (let attempt = 0; attempt < 20 && refusals(path) === had; attempt++) {
        const r = await upload(path);
        assert.ok(r.status === 413 || r.status === 503 || r.reset || r.stalled, `${path}: ${JSON.stringify(r)}`);
        assert.ok(r.sent < 100 * 1024 * 1024, `${path}: answered before the upload ended (${r.sent} bytes sent)`);
        await new Promise((res) => setTimeout(res, 300));
      }
      await new Promise((res) => setTimeout(res, 300));
      assert.ok(refusals(path) > had, `${path}: the worker answered 413`);
    }
    // The worker's wasm memory (which never shrinks) did not grow; the whole stack (wrangler's
    // dev proxy buffers what the client pushed before the answer) grew far less than one body.
    // Flat: a few 64 KiB pages (the cap plus a chunk), never a body's worth.
    const wasmGrown = (await wasm()) - wasmBefore;
    assert.ok(wasmGrown <= 1024 * 1024, `the worker's wasm memory grew by ${wasmGrown} bytes`);
    const grown = rss() - before;
    assert.ok(grown < 100 * 1024 * 1024, `the stack grew by ${(grown / 1048576).toFixed(1)} MB`);
  });

  test("a signed query replayed with another body is refused; WeChat's own retry is not", async () => {
    const q = signedQuery(s.config.WECHAT_TOKEN);
    const real = subscribeXml({ from: "oReplayReal" });
    const first = await fetch(`${s.base}/wechat?${q}`, { method: "POST", body: real });
    assert.equal(first.status, 200);
    const retry = await fetch(`${s.base}/wechat?${q}`, { method: "POST", body: real });
    assert.equal(retry.status, 200, "the same query and body again: WeChat retrying");
    const forged = await fetch(`${s.base}/wechat?${q}`, { method: "POST", body: subscribeXml({ from: "oReplayForged", scene: "vip-coupon" }) });
    assert.equal(forged.status, 403);
    assert.equal((await forged.json()).error, "replayed");
    assert.equal((await s.admin("/followers/oReplayForged")).status, 404, "the forged follow was not recorded");
  });

  test("forged MASSSENDJOBFINISH reports for unknown MsgIDs leave every quota intact", async () => {
    for (const who of ["oQuota1", "oQuota2", "oQuota3"]) await s.sim("/sim/follow", { openid: who });
    const left = async () => (await (await s.admin("/quota")).json()).left;
    const fresh = await left();
    for (let i = 0; i < 6; i++) {
      const xml = `<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[mphelper]]></FromUserName><CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[MASSSENDJOBFINISH]]></Event><MsgID>${990000 + i}</MsgID><Status><![CDATA[send success]]></Status><TotalCount>3</TotalCount><FilterCount>3</FilterCount><SentCount>3</SentCount><ErrorCount>0</ErrorCount></xml>`;
      const r = await fetch(`${s.base}/wechat?${signedQuery(s.config.WECHAT_TOKEN)}`, { method: "POST", body: xml });
      assert.equal(r.status, 200, "answered success: a forger learns nothing");
    }
    assert.deepEqual(await left(), fresh, "six forged reports, no mass message counted");
    assert.ok(fresh[4] >= 3, JSON.stringify(fresh));
  });

  test("a visitor asking for the owner's label gets the default welcome; declared labels keep theirs", async () => {
    const vip = await askCode("198.51.100.40", "vip-coupon");
    const scanned = await s.sim("/sim/scan", { url: vip.url });
    const welcome = xmlField(scanned.reply, "Content");
    assert.ok(welcome && !/VIP/.test(welcome), welcome);
    const home = await askCode("198.51.100.41", "home");
    assert.equal(xmlField((await s.sim("/sim/scan", { url: home.url })).reply, "Content"), "Welcome home", "a label the owner declared");
    const own = await (await s.admin("/qr", { method: "POST", body: { scene: "w5", permanent: true } })).json();
    assert.equal(own.error, "refused", "owner-made codes cannot take the pool's scenes");
  });

  test("pages go out with CSP, frame-ancestors, nosniff and Referrer-Policy; anonymous health says only ok", async () => {
    for (const path of ["/", "/console/", "/pricing"]) {
      const r = await fetch(s.base + path);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get("content-security-policy") || "", /frame-ancestors 'self'/, path);
      assert.match(r.headers.get("content-security-policy"), /script-src 'self' 'wasm-unsafe-eval'/);
      assert.equal(r.headers.get("x-content-type-options"), "nosniff");
      assert.equal(r.headers.get("referrer-policy"), "strict-origin-when-cross-origin");
    }
    assert.match(await (await fetch(s.base + "/console/")).text(), /<iframe id="e-preview"[^>]* sandbox="allow-scripts"/);
    const health = await (await fetch(`${s.base}/api/health`)).json();
    assert.deepEqual(Object.keys(health).sort(), ["ok", "simulator"], "a development stack names its simulator, nothing else");
    const admin = await (await s.admin("/health")).json();
    assert.equal(admin.callback_mode, "plain");
    assert.match(admin.warnings.join(" "), /plain mode/);
  });

  test("WeChat's errors reach visitors without errcode, errmsg or advice", async () => {
    const noOrdinary = await startStack({ FOLLOW_QR_URL: null });
    try {
      await noOrdinary.sim("/sim/faults", { path: "/cgi-bin/qrcode/create", errcode: 40164, count: 5 });
      const r = await fetch(`${noOrdinary.base}/api/qr`, { method: "POST", headers: { "cf-connecting-ip": "198.51.100.99" }, body: JSON.stringify({ page: "/", scene: "x" }) });
      const body = await r.text();
      assert.ok(r.status >= 400, body);
      assert.doesNotMatch(body, /errmsg|errcode|whitelist|40164|IP/, body);
      await new Promise((r) => setTimeout(r, 300));
      assert.match(noOrdinary.logs.join(""), /40164/, "the owner's log has it");
    } finally {
      await noOrdinary.stop();
    }
  });

  test("the dialog's WebSocket hears the follow at once; other origins and plain GETs are refused", async () => {
    const v = await askCode("198.51.100.60", "home");
    const ws = new WebSocket(`${s.base.replace("http", "ws")}/api/qr/${v.visit}/live`);
    const messages = [];
    ws.onmessage = (e) => messages.push(JSON.parse(e.data).state);
    await new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; });
    const until = async (f) => { for (let i = 0; i < 100 && !f(); i++) await new Promise((r) => setTimeout(r, 50)); assert.ok(f(), JSON.stringify(messages)); };
    await until(() => messages[0] === "waiting");
    const scanned = Date.now();
    await s.sim("/sim/scan", { url: v.url });
    await until(() => messages.includes("followed"));
    assert.ok(Date.now() - scanned < 2000, "pushed, not polled");
    ws.send("ping");
    await until(() => messages.filter((m) => m === "followed").length === 2);
    ws.close();
    assert.equal((await fetch(`${s.base}/api/qr/${v.visit}/live`)).status, 426, "a plain GET is told to upgrade");
    const upgrade = (path, origin) => new Promise((resolve) => {
      const req = http.request(`${s.base}${path}`, { headers: { origin, connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" } });
      req.on("response", (r) => { r.resume(); resolve(r.statusCode); });
      req.on("upgrade", (r, socket) => { socket.destroy(); resolve(101); });
      req.end();
    });
    assert.equal(await upgrade(`/api/qr/${v.visit}/live`, "https://evil.example"), 403, "an origin not allowed cannot listen");
    assert.equal(await upgrade("/api/qr/0123456789abcdef01234567/live", s.base), 404, "no such visit");
  });

  test("nothing panicked", () => {
    const bad = s.logs.join("").split("\n").filter((l) => /panicked|RuntimeError|Uncaught/.test(l));
    assert.deepEqual(bad, []);
  });
});
