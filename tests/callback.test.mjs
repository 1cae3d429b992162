// /wechat through real workerd: URL verification, pushes, refusals, retries, safe mode.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startStack, signedQuery, sha1Signature, subscribeXml, xmlField, wechatEncrypt, wechatDecrypt, AES_KEY } from "./support/stack.mjs";

describe("plain mode", () => {
  let s;
  before(async () => { s = await startStack(); });
  after(async () => { await s?.stop(); });
  const url = (q) => `${s.base}/wechat?${q}`;
  const token = () => s.config.WECHAT_TOKEN;

  test("URL verification echoes echostr verbatim", async () => {
    const r = await fetch(url(signedQuery(token(), { echostr: "hello 你好+" })));
    assert.equal(r.status, 200);
    assert.equal(await r.text(), "hello 你好+");
  });

  test("URL verification with a forged signature is 403", async () => {
    const q = signedQuery("not-the-token", { echostr: "hello" });
    const r = await fetch(url(q));
    assert.equal(r.status, 403);
    assert.equal((await r.json()).error, "bad_signature");
    const missing = await fetch(url("echostr=hello&timestamp=1&nonce=2"));
    assert.equal(missing.status, 403);
  });

  test("a follow is answered with the welcome text, To/From swapped", async () => {
    const r = await fetch(url(signedQuery(token())), { method: "POST", body: subscribeXml({ from: "oAlice" }) });
    assert.equal(r.status, 200);
    const xml = await r.text();
    assert.equal(xmlField(xml, "ToUserName"), "oAlice");
    assert.equal(xmlField(xml, "FromUserName"), "gh_test");
    assert.equal(xmlField(xml, "MsgType"), "text");
    assert.equal(xmlField(xml, "Content"), s.config.WELCOME_TEXT);
    assert.ok(Math.abs(Number(xmlField(xml, "CreateTime")) - Date.now() / 1000) < 60, "CreateTime is in seconds");
  });

  test("a retried delivery gets the identical reply", async () => {
    const body = subscribeXml({ from: "oRetry", createTime: 1700000000 });
    const first = await (await fetch(url(signedQuery(token())), { method: "POST", body })).text();
    await new Promise((r) => setTimeout(r, 1100)); // a new second: a fresh reply would differ
    const second = await (await fetch(url(signedQuery(token())), { method: "POST", body })).text();
    assert.equal(second, first);
  });

  test("a forged push is 403 and has no effect", async () => {
    const body = subscribeXml({ from: "oForged", createTime: 1700000100 });
    const forged = await fetch(url(signedQuery("wrong")), { method: "POST", body });
    assert.equal(forged.status, 403);
    // Had the forgery been recorded, this genuine first delivery would replay its reply.
    const real = await fetch(url(signedQuery(token())), { method: "POST", body });
    assert.equal(real.status, 200);
    assert.equal(xmlField(await real.text(), "ToUserName"), "oForged");
  });

  test("messages we do not answer get `success`", async () => {
    const body = `<xml><ToUserName>gh_test</ToUserName><FromUserName>oBob</FromUserName><CreateTime>1700000200</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>42</MsgId></xml>`;
    const r = await fetch(url(signedQuery(token())), { method: "POST", body });
    assert.equal(await r.text(), "success");
    const unknown = `<xml><ToUserName>gh_test</ToUserName><FromUserName>oBob</FromUserName><CreateTime>1700000201</CreateTime><MsgType>hologram</MsgType></xml>`;
    assert.equal(await (await fetch(url(signedQuery(token())), { method: "POST", body: unknown })).text(), "success");
  });

  test("hostile and malformed bodies get 400 with a reason", async () => {
    const cases = [
      ['<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><A>&e;</A></xml>', "forbidden_xml"],
      ["<xml><ToUserName>x</ToUserName>", "malformed_xml"],
      ["<xml><ToUserName>x</ToUserName></xml>", "missing_field"],
      ["{\"json\":true}", "malformed_xml"],
    ];
    for (const [body, reason] of cases) {
      const r = await fetch(url(signedQuery(token())), { method: "POST", body });
      assert.equal(r.status, 400, body);
      assert.equal((await r.json()).error, reason, body);
    }
  });

  test("an oversized body is refused with 413 before parsing", async () => {
    const r = await fetch(url(signedQuery(token())), { method: "POST", body: "<xml>" + "a".repeat(70 * 1024) + "</xml>" });
    assert.equal(r.status, 413);
    assert.equal((await r.json()).error, "body_too_large");
  });

  test("other methods are 405", async () => {
    const r = await fetch(url(signedQuery(token())), { method: "PUT", body: "x" });
    assert.equal(r.status, 405);
  });

  test("static assets and the widget are served", async () => {
    const page = await fetch(`${s.base}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /widget\.js/);
    const js = await fetch(`${s.base}/widget.js`);
    assert.equal(js.status, 200);
    const wasm = await fetch(`${s.base}/widget_bg.wasm`);
    assert.equal(wasm.status, 200);
    const bytes = new Uint8Array(await wasm.arrayBuffer());
    assert.deepEqual([...bytes.subarray(0, 4)], [0, 0x61, 0x73, 0x6d], "a wasm module");
  });
});

describe("safe mode", () => {
  let s;
  before(async () => { s = await startStack({ WECHAT_ENCODING_AES_KEY: AES_KEY }); });
  after(async () => { await s?.stop(); });

  function encryptedPush(xml, { token = s.config.WECHAT_TOKEN } = {}) {
    const encrypt = wechatEncrypt(AES_KEY, s.config.WECHAT_APPID, xml);
    const timestamp = String(Math.floor(Date.now() / 1000));
    const nonce = "12345";
    const q = new URLSearchParams({
      signature: sha1Signature(token, timestamp, nonce), timestamp, nonce, openid: "oSafe",
      encrypt_type: "aes", msg_signature: sha1Signature(token, timestamp, nonce, encrypt),
    });
    return { url: `${s.base}/wechat?${q}`, body: `<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>` };
  }

  test("an encrypted follow gets an encrypted, correctly signed welcome", async () => {
    const { url, body } = encryptedPush(subscribeXml({ from: "oSafe" }));
    const r = await fetch(url, { method: "POST", body });
    assert.equal(r.status, 200);
    const env = await r.text();
    const encrypt = xmlField(env, "Encrypt");
    assert.ok(encrypt, env);
    assert.equal(xmlField(env, "MsgSignature"), sha1Signature(s.config.WECHAT_TOKEN, xmlField(env, "TimeStamp"), xmlField(env, "Nonce"), encrypt));
    const { msg, appid } = wechatDecrypt(AES_KEY, encrypt);
    assert.equal(appid, s.config.WECHAT_APPID);
    assert.equal(xmlField(msg, "Content"), s.config.WELCOME_TEXT);
    assert.equal(xmlField(msg, "ToUserName"), "oSafe");
  });

  test("a valid `signature` does not stand in for `msg_signature`", async () => {
    const { url, body } = encryptedPush(subscribeXml({ from: "oSafe2" }));
    const u = new URL(url);
    u.searchParams.set("msg_signature", u.searchParams.get("signature"));
    assert.equal((await fetch(u, { method: "POST", body })).status, 403);
  });

  test("a plain body is refused in safe mode, whatever the request claims", async () => {
    const q = signedQuery(s.config.WECHAT_TOKEN);
    const r = await fetch(`${s.base}/wechat?${q}`, { method: "POST", body: subscribeXml() });
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error, "missing_field");
  });

  test("ciphertext for another appid is refused", async () => {
    const encrypt = wechatEncrypt(AES_KEY, "wx99999999999999ff", subscribeXml());
    const timestamp = "1700000000", nonce = "1";
    const q = new URLSearchParams({ timestamp, nonce, encrypt_type: "aes", msg_signature: sha1Signature(s.config.WECHAT_TOKEN, timestamp, nonce, encrypt) });
    const r = await fetch(`${s.base}/wechat?${q}`, { method: "POST", body: `<xml><Encrypt>${encrypt}</Encrypt></xml>` });
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error, "wrong_appid");
  });
});

describe("key rotation", () => {
  const NEW_KEY = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg";
  let s;
  before(async () => { s = await startStack({ WECHAT_ENCODING_AES_KEY: NEW_KEY, WECHAT_ENCODING_AES_KEY_PREVIOUS: AES_KEY }); });
  after(async () => { await s?.stop(); });

  for (const [label, key] of [["the previous key", AES_KEY], ["the new key", NEW_KEY]]) {
    test(`a push encrypted with ${label} is answered with that key`, async () => {
      const encrypt = wechatEncrypt(key, s.config.WECHAT_APPID, subscribeXml({ from: "oRot" + label.length }));
      const timestamp = String(Math.floor(Date.now() / 1000)), nonce = "77";
      const q = new URLSearchParams({ timestamp, nonce, encrypt_type: "aes", msg_signature: sha1Signature(s.config.WECHAT_TOKEN, timestamp, nonce, encrypt) });
      const r = await fetch(`${s.base}/wechat?${q}`, { method: "POST", body: `<xml><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>` });
      assert.equal(r.status, 200);
      const { msg } = wechatDecrypt(key, xmlField(await r.text(), "Encrypt"));
      assert.equal(xmlField(msg, "Content"), s.config.WELCOME_TEXT);
    });
  }

  test("a push under an unknown key is refused", async () => {
    const encrypt = wechatEncrypt("0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", s.config.WECHAT_APPID, subscribeXml());
    const timestamp = "1700000000", nonce = "1";
    const q = new URLSearchParams({ timestamp, nonce, encrypt_type: "aes", msg_signature: sha1Signature(s.config.WECHAT_TOKEN, timestamp, nonce, encrypt) });
    const r = await fetch(`${s.base}/wechat?${q}`, { method: "POST", body: `<xml><Encrypt>${encrypt}</Encrypt></xml>` });
    assert.equal(r.status, 400);
  });
});
