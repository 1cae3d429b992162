// Follow to log in (issue 18): the snippet with data-intent="login" on a page from a second
// origin in Chromium; the simulator scans; the page gets a JWS that jose (node) and PyJWT
// (python) verify against the worker's JWKS; tampered, expired, wrong-audience and replayed
// tokens are refused; a token signed with the previous week's key still verifies.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createHmac, createPrivateKey, sign } from "node:crypto";
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";
import { createRemoteJWKSet, jwtVerify, decodeProtectedHeader } from "jose";
import { startStack, freePort } from "./support/stack.mjs";

const SECRET = "test-login-secret-0123456789abcdefghij";
const WEEK = 7 * 86400;
const b64url = (b) => Buffer.from(b).toString("base64url");

let s, browser, host, hostBase;
before(async () => {
  const hostPort = await freePort();
  hostBase = `http://127.0.0.1:${hostPort}`;
  s = await startStack({ ALLOWED_ORIGINS: hostBase, LOGIN_SECRET: SECRET });
  host = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    const intent = req.url.startsWith("/unlock") ? "unlock" : "login";
    if (req.url.startsWith("/queue")) {
      // No data-intent: the page asks for a log-in from code, with the queue command.
      return res.end(`<!doctype html><html lang="en"><head><title>Shop</title></head><body><button id="go">Log in with WeChat</button>
      <script>addEventListener("wxedge:login", (e) => { window.__login = e.detail; }); addEventListener("wxedge:qr", (e) => { window.__qr = e.detail; });
        window.wxedge = window.wxedge || [];
        document.querySelector("#go").onclick = () => wxedge.push(["login", { nonce: "q-nonce-7" }]);</script>
      <script async src="${s.base}/widget.js" data-account="AcmeTea" data-scene="login"></script>
      </body></html>`);
    }
    res.end(`<!doctype html><html lang="en"><head><title>Shop</title></head><body><h1>Log in to the shop</h1><div id="slot"></div>
      <p id="members" data-wxedge-unlock hidden>members only</p>
      <script>addEventListener("wxedge:login", (e) => { window.__login = e.detail; }); addEventListener("wxedge:qr", (e) => { window.__qr = e.detail; });</script>
      <script async src="${s.base}/widget.js" data-account="AcmeTea" data-prompt="inline" data-target="#slot" data-scene="login" data-intent="${intent}" data-nonce="n-${req.url.length}"></script>
      </body></html>`);
  });
  await new Promise((r) => host.listen(hostPort, "127.0.0.1", r));
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"] });
});
after(async () => { await browser?.close(); host?.close(); await s?.stop(); });

/** The page logs in: opens the dialog, `as` (or a new person) scans, the page gets its token. */
async function logIn(as) {
  const page = await browser.newPage();
  await page.goto(hostBase + "/");
  await page.waitForSelector("html[data-wxedge=ready]");
  await page.locator("#slot button").first().click();
  await page.waitForFunction(() => window.__qr && window.__qr.visit, null, { timeout: 10000 });
  const qr = await page.evaluate(() => window.__qr);
  const scan = await s.sim("/sim/scan", as ? { url: qr.url, openid: as } : { url: qr.url });
  await page.waitForFunction(() => window.__login, null, { timeout: 8000 });
  const login = await page.evaluate(() => window.__login);
  await page.close();
  return { ...login, openid: scan.openid, event: scan.event, visit: qr.visit };
}

const verify = (body) => fetch(`${s.base}/api/login/verify`, { method: "POST", body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, ...(await r.json()) }));

/** A token with `claims` signed with week `period`'s key, derived from the secret as the worker does. */
function forge(claims, period) {
  const seed = createHmac("sha256", SECRET).update(`wxedge login signing key\n${period}\n`).digest();
  const key = createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]), format: "der", type: "pkcs8" });
  const input = `${b64url(JSON.stringify({ alg: "EdDSA", typ: "JWT", kid: `wxedge-${period}` }))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${b64url(sign(null, Buffer.from(input), key))}`;
}

function pyjwt(token, audience, leeway = 0) {
  const script = `
import json, sys, jwt
token, jwks, aud, leeway = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
key = jwt.PyJWKClient(jwks).get_signing_key_from_jwt(token)
try:
    # A negative leeway plays a clock 5 minutes on (iat is then "in the future": not checked).
    print(json.dumps(jwt.decode(token, key.key, algorithms=["EdDSA"], audience=aud, leeway=leeway, options={"verify_iat": leeway >= 0})))
except jwt.PyJWTError as e:
    print(json.dumps({"error": type(e).__name__}))`;
  return JSON.parse(execFileSync(process.env.WXEDGE_PYTHON, ["-c", script, token, `${s.base}/.well-known/jwks.json`, audience, String(leeway)]).toString());
}

describe("follow to log in", () => {
  let first;
  test("a new follower logs in on another origin's page; jose and PyJWT verify the token against the JWKS", async () => {
    first = await logIn();
    assert.equal(first.event, "subscribe");
    assert.equal(first.new_follower, true);
    const jwks = createRemoteJWKSet(new URL(`${s.base}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(first.token, jwks, { audience: hostBase, issuer: s.base, algorithms: ["EdDSA"] });
    assert.equal(protectedHeader.alg, "EdDSA");
    assert.match(payload.sub, /^wx_[A-Za-z0-9_-]{24}$/, "a per-site pseudonym");
    assert.notEqual(payload.sub, first.openid, "not the OpenID");
    assert.equal(payload.jti, first.visit);
    assert.equal(payload.nonce, "n-1");
    assert.equal(payload.new_follower, true);
    assert.equal(payload.scene, "login");
    assert.equal(payload.page, "/");
    assert.ok(payload.exp - payload.iat <= 300, "lives at most 5 minutes");
    const py = pyjwt(first.token, hostBase);
    assert.equal(py.sub, payload.sub, "PyJWT reads the same claims");
    // The follower is told in the chat which site they logged in on.
    const inbox = await s.sim(`/sim/inbox?openid=${first.openid}`);
    const host = new URL(hostBase).host;
    assert.ok(inbox.messages.some((m) => m.kind === "cs" && JSON.stringify(m.content).includes(`You are now logged in on ${host}`)), JSON.stringify(inbox.messages));
  });

  test("the queue command [\"login\", {nonce}] opens a log-in from the page's code; the token carries its nonce", async () => {
    const page = await browser.newPage();
    await page.goto(hostBase + "/queue");
    await page.waitForSelector("html[data-wxedge=ready]");
    await page.click("#go");
    await page.waitForFunction(() => window.__qr && window.__qr.visit, null, { timeout: 10000 });
    await s.sim("/sim/scan", { url: (await page.evaluate(() => window.__qr)).url });
    await page.waitForFunction(() => window.__login, null, { timeout: 8000 });
    const { token } = await page.evaluate(() => window.__login);
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${s.base}/.well-known/jwks.json`)), { audience: hostBase });
    assert.deepEqual([payload.nonce, payload.new_follower, payload.scene], ["q-nonce-7", true, "login"]);
    await page.close();
  });

  test("an existing follower (SCAN) logs in as the same person for this site", async () => {
    const again = await logIn(first.openid);
    assert.equal(again.event, "SCAN");
    assert.equal(again.new_follower, false);
    const jwks = createRemoteJWKSet(new URL(`${s.base}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(again.token, jwks, { audience: hostBase });
    const { payload: before } = await jwtVerify(first.token, jwks, { audience: hostBase });
    assert.equal(payload.sub, before.sub, "the same person, the same id on this site");
    assert.notEqual(payload.jti, before.jti);
  });

  test("verify once; tampered, expired, wrong-audience and replayed tokens are refused", async () => {
    const t = await logIn();
    const jwks = createRemoteJWKSet(new URL(`${s.base}/.well-known/jwks.json`));
    const [h, p, sig] = t.token.split(".");
    const claims = JSON.parse(Buffer.from(p, "base64url"));
    const tampered = [h, b64url(JSON.stringify({ ...claims, sub: "wx_someone_else_entirely_" })), sig].join(".");
    await assert.rejects(jwtVerify(tampered, jwks, { audience: hostBase }), /signature verification failed/);
    assert.equal(pyjwt(tampered, hostBase).error, "InvalidSignatureError");
    assert.deepEqual(await verify({ token: tampered, audience: hostBase }), { status: 401, valid: false, reason: "bad_signature" });
    assert.equal((await verify({ token: t.token })).status, 400, "the audience is required: another allowed site's token must not verify");
    await assert.rejects(jwtVerify(t.token, jwks, { audience: "https://evil.example" }), /unexpected "aud"/);
    assert.equal(pyjwt(t.token, "https://evil.example").error, "InvalidAudienceError");
    assert.deepEqual(await verify({ token: t.token, audience: "https://evil.example" }), { status: 401, valid: false, reason: "wrong_audience" });
    await assert.rejects(jwtVerify(t.token, jwks, { audience: hostBase, currentDate: new Date(Date.now() + 301_000) }), /"exp" claim timestamp check failed/);
    assert.equal(pyjwt(t.token, hostBase, -301).error, "ExpiredSignatureError");
    assert.equal((await verify({ token: "not.a.token", audience: hostBase })).reason, "malformed");
    // Signed with this week's key but past its exp, and one issued in the future: the worker refuses both.
    const period = Math.floor(Date.now() / 1000 / WEEK);
    const now = Math.floor(Date.now() / 1000);
    assert.deepEqual(await verify({ token: forge({ ...claims, iat: now - 400, exp: now - 100 }, period), audience: hostBase }), { status: 401, valid: false, reason: "expired" });
    assert.deepEqual(await verify({ token: forge({ ...claims, iat: now + 600, exp: now + 800 }, period), audience: hostBase }), { status: 401, valid: false, reason: "not_yet_valid" });
    const ok = await verify({ token: t.token, audience: hostBase });
    assert.equal(ok.status, 200);
    assert.equal(ok.valid, true);
    assert.equal(ok.claims.jti, t.visit);
    assert.deepEqual(await verify({ token: t.token, audience: hostBase }), { status: 401, valid: false, reason: "replayed" }, "a token verifies once");
  });

  test("only the page that opened the log-in gets its token, once", async () => {
    const lent = await (await fetch(`${s.base}/api/qr`, { method: "POST", headers: { origin: hostBase, "cf-connecting-ip": "198.51.100.40" }, body: JSON.stringify({ page: "/", scene: "login", intent: "login" }) })).json();
    assert.ok(lent.visit, JSON.stringify(lent));
    const ask = (origin) => fetch(`${s.base}/api/login/token`, { method: "POST", headers: origin ? { origin } : {}, body: JSON.stringify({ visit: lent.visit }) });
    assert.equal((await ask(hostBase)).status, 422, "not scanned yet");
    await s.sim("/sim/scan", { url: lent.url });
    assert.equal((await ask("https://evil.example")).status, 403, "an origin not allowed");
    assert.equal((await ask(null)).status, 422, "the worker's own origin is not the page's");
    const r = await ask(hostBase);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("access-control-allow-origin"), hostBase);
    assert.ok((await r.json()).token);
    assert.equal((await ask(hostBase)).status, 409, "one token per visit");
    // An ordinary follow visit gives no token.
    const plain = await (await fetch(`${s.base}/api/qr`, { method: "POST", headers: { origin: hostBase, "cf-connecting-ip": "198.51.100.41" }, body: JSON.stringify({ page: "/", scene: "x" }) })).json();
    await s.sim("/sim/scan", { url: plain.url });
    assert.equal((await fetch(`${s.base}/api/login/token`, { method: "POST", headers: { origin: hostBase }, body: JSON.stringify({ visit: plain.visit }) })).status, 422);
  });

  test("data-intent=unlock reveals the page's gated element after the follow (a soft gate)", async () => {
    const page = await browser.newPage();
    await page.goto(hostBase + "/unlock");
    await page.waitForSelector("html[data-wxedge=ready]");
    assert.ok(await page.locator("#members").isHidden());
    await page.locator("#slot button").first().click();
    await page.waitForFunction(() => window.__qr && window.__qr.visit, null, { timeout: 10000 });
    await s.sim("/sim/scan", { url: (await page.evaluate(() => window.__qr)).url });
    await page.waitForSelector("#members[data-wxedge-unlocked]", { state: "visible", timeout: 8000 });
    assert.equal(await page.evaluate(() => window.__login), undefined, "no token for an unlock");
    await page.close();
  });

  test("the console's log-ins by site", async () => {
    const r = await (await s.admin("/logins")).json();
    assert.equal(r.enabled, true);
    const site = r.sites.find((x) => x.origin === hostBase);
    assert.ok(site && site.logins >= 4 && site.new_followers >= 2, JSON.stringify(r.sites));
    assert.equal(r.logins[0].origin, hostBase);
    assert.ok(r.logins.every((l, i) => i === 0 || r.logins[i - 1].at >= l.at), "newest first");
    // The owner's console shows the same on its Followers page.
    const page = await browser.newPage();
    await page.goto(s.base + "/console/");
    await page.fill("#token", s.config.ADMIN_TOKEN);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#tabs:not([hidden])");
    await page.goto(s.base + "/console/#followers");
    await page.waitForFunction((origin) => [...document.querySelectorAll("#login-sites tbody tr")].some((tr) => tr.innerText.includes(origin)), hostBase, { timeout: 8000 });
    const row = await page.evaluate((origin) => [...document.querySelectorAll("#login-sites tbody tr")].find((tr) => tr.innerText.includes(origin)).innerText, hostBase);
    assert.match(row, new RegExp(`\\t${site.logins}\\t${site.new_followers}\\t`), row);
    assert.ok(await page.locator("#login-recent tbody tr").count() >= 4);
    await page.close();
  });

  test("rotation: the JWKS has this week's and last week's keys; a token signed with last week's verifies", async () => {
    const jwks = await (await fetch(`${s.base}/.well-known/jwks.json`)).json();
    const period = Math.floor(Date.now() / 1000 / WEEK);
    assert.deepEqual(jwks.keys.map((k) => k.kid), [`wxedge-${period}`, `wxedge-${period - 1}`]);
    assert.ok(jwks.keys.every((k) => k.kty === "OKP" && k.crv === "Ed25519" && k.alg === "EdDSA" && !k.d), "public keys only");
    const t = await logIn();
    assert.equal(decodeProtectedHeader(t.token).kid, `wxedge-${period}`);
    // The same claims signed with last week's key, derived from the secret as the worker does.
    const seed = createHmac("sha256", SECRET).update(`wxedge login signing key\n${period - 1}\n`).digest();
    const key = createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]), format: "der", type: "pkcs8" });
    const [, p] = t.token.split(".");
    const input = `${b64url(JSON.stringify({ alg: "EdDSA", typ: "JWT", kid: `wxedge-${period - 1}` }))}.${p}`;
    const old = `${input}.${b64url(sign(null, Buffer.from(input), key))}`;
    const { payload } = await jwtVerify(old, createRemoteJWKSet(new URL(`${s.base}/.well-known/jwks.json`)), { audience: hostBase });
    assert.equal(payload.jti, t.visit);
    assert.equal((await verify({ token: old, audience: hostBase })).valid, true, "the worker verifies last week's key too");
    // Two weeks old: no longer published, refused.
    const seed2 = createHmac("sha256", SECRET).update(`wxedge login signing key\n${period - 2}\n`).digest();
    const key2 = createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed2]), format: "der", type: "pkcs8" });
    const input2 = `${b64url(JSON.stringify({ alg: "EdDSA", typ: "JWT", kid: `wxedge-${period - 2}` }))}.${p}`;
    assert.equal((await verify({ token: `${input2}.${b64url(sign(null, Buffer.from(input2), key2))}`, audience: hostBase })).reason, "unknown_key");
  });
});

describe("follow to log in with a confirmation in the chat (LOGIN_CONFIRM)", () => {
  let outer;
  before(async () => { outer = s; s = await startStack({ ALLOWED_ORIGINS: hostBase, LOGIN_SECRET: SECRET, LOGIN_CONFIRM: "true" }); });
  after(async () => { await s?.stop(); s = outer; });

  test("no token until the one who scanned replies 1; someone else's reply changes nothing", async () => {
    const page = await browser.newPage();
    await page.goto(hostBase + "/");
    await page.waitForSelector("html[data-wxedge=ready]");
    await page.locator("#slot button").first().click();
    await page.waitForFunction(() => window.__qr && window.__qr.visit, null, { timeout: 10000 });
    const scan = await s.sim("/sim/scan", { url: (await page.evaluate(() => window.__qr)).url });
    const asked = async () => (await s.sim(`/sim/inbox?openid=${scan.openid}`)).messages.some((m) => m.kind === "cs" && /Reply 1 within 3 minutes/.test(JSON.stringify(m.content)));
    for (let i = 0; i < 30 && !(await asked()); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(await asked(), "the follower is asked in the chat, naming the site");
    await page.waitForFunction(() => [...document.querySelectorAll("[data-wxedge]")].some((e) => /confirm in WeChat/.test(e.shadowRoot?.textContent || "")), null, { timeout: 5000 });
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await page.evaluate(() => window.__login), undefined, "no token before the confirmation");
    const other = (await s.sim("/sim/follow", {})).openid;
    await s.sim("/sim/text", { openid: other, content: "1" });
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await page.evaluate(() => window.__login), undefined, "someone else's 1 confirms nothing");
    const reply = await s.sim("/sim/text", { openid: scan.openid, content: "1" });
    assert.match(JSON.stringify(reply.reply), /Confirmed: you are now logged in on/);
    await page.waitForFunction(() => window.__login, null, { timeout: 5000 });
    const { payload } = await jwtVerify((await page.evaluate(() => window.__login)).token, createRemoteJWKSet(new URL(`${s.base}/.well-known/jwks.json`)), { audience: hostBase });
    assert.equal(payload.new_follower, true);
    await page.close();
  });
});
