// Hostile input at every door: each gets its documented answer, nothing panics, nothing leaks.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startStack, signedQuery, sha1Signature, subscribeXml, wechatEncrypt, AES_KEY } from "./support/stack.mjs";

describe("hostile input", () => {
  let s, safe;
  before(async () => {
    s = await startStack();
    safe = await startStack({ WECHAT_ENCODING_AES_KEY: AES_KEY });
  });
  after(async () => { await s?.stop(); await safe?.stop(); });

  const post = (stack, body, query = signedQuery(stack.config.WECHAT_TOKEN), headers = {}) =>
    fetch(`${stack.base}/wechat?${query}`, { method: "POST", body, headers });
  const answer = async (r) => ({ status: r.status, error: (await r.json().catch(() => ({}))).error });
  const text = (content, from = "oHostile") => `<xml><ToUserName>gh</ToUserName><FromUserName>${from}</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content><![CDATA[${content}]]></Content><MsgId>42</MsgId></xml>`;

  test("forged and replayed signatures: 403", async () => {
    const forged = new URLSearchParams({ signature: "0".repeat(40), timestamp: String(Math.floor(Date.now() / 1000)), nonce: "1" });
    assert.deepEqual(await answer(await post(s, subscribeXml(), forged)), { status: 403, error: "bad_signature" });
    // A genuine query string captured an hour ago, replayed with a new body.
    const ts = String(Math.floor(Date.now() / 1000) - 3600);
    const old = new URLSearchParams({ signature: sha1Signature(s.config.WECHAT_TOKEN, ts, "7"), timestamp: ts, nonce: "7" });
    assert.deepEqual(await answer(await post(s, text("replayed"), old)), { status: 403, error: "stale_request" });
    const future = String(Math.floor(Date.now() / 1000) + 3600);
    const ahead = new URLSearchParams({ signature: sha1Signature(s.config.WECHAT_TOKEN, future, "7"), timestamp: future, nonce: "7" });
    assert.deepEqual(await answer(await post(s, text("early"), ahead)), { status: 403, error: "stale_request" });
  });

  test("DTDs and entities: refused, never resolved", async () => {
    const laughs = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]><xml><ToUserName>&lol2;</ToUserName></xml>`;
    const xxe = `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><ToUserName>&xxe;</ToUserName></xml>`;
    const undeclared = text("x").replace("<![CDATA[x]]>", "&unknown;"); // inside CDATA it would be plain text
    for (const body of [laughs, xxe, undeclared]) assert.deepEqual(await answer(await post(s, body)), { status: 400, error: "forbidden_xml" });
    assert.equal((await post(s, text("&amp; inside CDATA is just text"))).status, 200);
  });

  test("a 10 MB body: 413 before it is read", async () => {
    const big = "<xml>" + "a".repeat(10 * 1024 * 1024) + "</xml>";
    assert.deepEqual(await answer(await post(s, big)), { status: 413, error: "body_too_large" });
  });

  test("deep nesting, invalid UTF-8, control characters, oversized fields: 400 with a reason", async () => {
    const deep = "<xml>" + "<a>".repeat(5000) + "</a>".repeat(5000) + "</xml>";
    assert.deepEqual(await answer(await post(s, deep)), { status: 400, error: "malformed_xml" });
    const bad = new Uint8Array([...new TextEncoder().encode("<xml><Content>"), 0xff, 0xfe, 0xc3, ...new TextEncoder().encode("</Content></xml>")]);
    assert.deepEqual(await answer(await post(s, bad)), { status: 400, error: "malformed_xml" });
    assert.deepEqual(await answer(await post(s, text("bell\u0007"))), { status: 400, error: "malformed_xml" });
    assert.deepEqual(await answer(await post(s, text("x", "o".repeat(5000)))), { status: 400, error: "missing_field" });
    const key = `<xml><ToUserName>gh</ToUserName><FromUserName>oK</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>CLICK</Event><EventKey>${"k".repeat(60000)}</EventKey></xml>`;
    assert.deepEqual(await answer(await post(s, key)), { status: 400, error: "missing_field" });
  });

  test("safe mode: wrong appid inside valid ciphertext, broken ciphertext, plain body: refused", async () => {
    const sealed = (plain, appid = safe.config.WECHAT_APPID) => {
      const encrypt = wechatEncrypt(AES_KEY, appid, plain);
      const timestamp = String(Math.floor(Date.now() / 1000)), nonce = "9";
      const q = new URLSearchParams({ timestamp, nonce, encrypt_type: "aes", msg_signature: sha1Signature(safe.config.WECHAT_TOKEN, timestamp, nonce, encrypt) });
      return [`<xml><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`, q];
    };
    assert.deepEqual(await answer(await post(safe, ...sealed(subscribeXml(), "wx99999999999999ff"))), { status: 400, error: "wrong_appid" });
    const [body, q] = sealed(subscribeXml());
    const broken = body.replace(/<Encrypt><!\[CDATA\[(.{10})/, "<Encrypt><![CDATA[!!!!!!!!!!");
    const timestamp = q.get("timestamp"), nonce = q.get("nonce");
    const enc = broken.match(/CDATA\[(.*)\]\]/)[1];
    const q2 = new URLSearchParams({ timestamp, nonce, encrypt_type: "aes", msg_signature: sha1Signature(safe.config.WECHAT_TOKEN, timestamp, nonce, enc) });
    assert.deepEqual(await answer(await post(safe, broken, q2)), { status: 400, error: "decrypt_failed" });
    assert.equal((await post(safe, body, q)).status, 200, "the genuine one still works");
  });

  test("the admin API without or with a wrong token: 401, and nothing is changed", async () => {
    for (const auth of [undefined, "Bearer wrong", "Basic " + Buffer.from("admin:" + s.config.ADMIN_TOKEN).toString("base64"), "Bearer " + s.config.ADMIN_TOKEN + "x"]) {
      const r = await fetch(`${s.base}/api/admin/rules`, { method: "PUT", headers: auth ? { authorization: auth } : {}, body: '{"default":{"type":"text","content":"pwned"}}' });
      assert.equal(r.status, 401, String(auth));
    }
    assert.equal((await (await s.admin("/rules")).json()).default, null);
  });

  test("a cross-origin call from an unlisted origin: 403, no CORS headers", async () => {
    const r = await fetch(`${s.base}/api/qr`, { method: "POST", headers: { origin: "https://evil.example" }, body: "{}" });
    assert.equal(r.status, 403);
    assert.equal(r.headers.get("access-control-allow-origin"), null);
  });

  test("nothing panicked or crashed in either worker", async () => {
    const bad = [s, safe].flatMap((x) => x.logs.join("").split("\n")).filter((l) => /panicked|RuntimeError|Reinitializing|Uncaught|\[ERROR\]/.test(l));
    assert.deepEqual(bad, []);
    assert.equal((await fetch(`${s.base}/api/health`)).status, 200);
  });
});
