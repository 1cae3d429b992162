// Interop with wechatpy (PyPI), a second implementation of WeChat's safe mode: wechatpy
// encrypts the push the worker must open, and decrypts the reply the worker sealed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { startStack, subscribeXml, xmlField, AES_KEY, ROOT } from "./support/stack.mjs";

const PYTHON = process.env.WXEDGE_PYTHON;
const peer = (args, input) => {
  const r = spawnSync(PYTHON, [join(ROOT, "tests", "interop", "wechatpy_peer.py"), ...args], { input, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
};

let s;
before(async () => {
  assert.ok(PYTHON, "WXEDGE_PYTHON must point at the venv with wechatpy (scripts/test.sh sets it)");
  s = await startStack({ WECHAT_ENCODING_AES_KEY: AES_KEY });
});
after(async () => { await s?.stop(); });

for (const [name, scene, expected] of [["plain follow", undefined, "Welcome to the test account"], ["follow with a Chinese scene", "价格页", "Welcome to the test account"]]) {
  test(`wechatpy-encrypted ${name} is opened, answered, and wechatpy opens the answer`, async () => {
    const { token, appid } = { token: s.config.WECHAT_TOKEN, appid: s.config.WECHAT_APPID };
    const push = JSON.parse(peer(["encrypt", token, AES_KEY, appid], subscribeXml({ from: "oPeer", scene })));
    const q = new URLSearchParams({ timestamp: push.timestamp, nonce: push.nonce, encrypt_type: "aes", msg_signature: push.msg_signature, openid: "oPeer" });
    const r = await fetch(`${s.base}/wechat?${q}`, { method: "POST", body: push.body });
    assert.equal(r.status, 200);
    const reply = peer(["decrypt", token, AES_KEY, appid], await r.text());
    assert.equal(xmlField(reply, "Content"), expected);
    assert.equal(xmlField(reply, "ToUserName"), "oPeer");
  });
}

test("wechatpy-encrypted push with a tampered signature is refused", async () => {
  const push = JSON.parse(peer(["encrypt", s.config.WECHAT_TOKEN, AES_KEY, s.config.WECHAT_APPID], subscribeXml()));
  const q = new URLSearchParams({ timestamp: push.timestamp, nonce: push.nonce, encrypt_type: "aes", msg_signature: "0".repeat(40) });
  assert.equal((await fetch(`${s.base}/wechat?${q}`, { method: "POST", body: push.body })).status, 403);
});
