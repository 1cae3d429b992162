// Faults: WeChat slow or failing, and the local stack killed and restarted. The worker degrades
// as designed and loses nothing.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http from "node:http";
import { startStack, freePort } from "./support/stack.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe("faults", () => {
  test("a WeChat answer slower than a callback's 5 s: admin calls wait for it; a late reply that WeChat refuses is logged, nothing breaks", async () => {
    const port = await freePort();
    const backend = http.createServer(async (req, res) => { await sleep(1500); res.end('{"type":"text","content":"late answer"}'); }).listen(port, "127.0.0.1");
    const s = await startStack({ REPLY_BUDGET_MS: "600" });
    try {
      await s.sim("/sim/faults", { path: "/cgi-bin/tags/get", delay_ms: 6000, count: 1 });
      const started = Date.now();
      const tags = await s.admin("/tags");
      assert.equal(tags.status, 200);
      assert.ok(Date.now() - started >= 6000, "waited for the slow answer within the admin budget");

      await s.admin("/rules", { method: "PUT", body: { forward: { url: `http://127.0.0.1:${port}/` } } });
      const who = (await s.sim("/sim/followers?limit=1")).followers[0].openid;
      await s.sim("/sim/faults", { path: "/cgi-bin/message/custom/send", errcode: 45009, count: 1 });
      const slow = await s.sim("/sim/text", { openid: who, content: "are you there?" });
      assert.equal(slow.reply, "success", "answered in time");
      await sleep(2500);
      assert.ok(s.logs.join("").includes("could not be sent"), "the refused late reply is logged");
      assert.equal((await s.sim(`/sim/inbox?openid=${who}`)).messages.filter((m) => m.kind === "cs").length, 0);
      // The next one goes through.
      const again = await s.sim("/sim/text", { openid: who, content: "still there?" });
      assert.equal(again.reply, "success");
      for (let i = 0; i < 30; i++) {
        if ((await s.sim(`/sim/inbox?openid=${who}`)).messages.some((m) => m.kind === "cs")) break;
        await sleep(200);
      }
      assert.ok((await s.sim(`/sim/inbox?openid=${who}`)).messages.some((m) => m.kind === "cs" && /late answer/.test(m.content)));
      // stable_token failing with -1 twice, then fine: retried within the request.
      await s.sim("/sim/faults", { path: "/cgi-bin/stable_token", errcode: -1, count: 2 });
      await fetch(`${s.simBase}/cgi-bin/token?grant_type=client_credential&appid=${s.config.WECHAT_APPID}&secret=${s.config.WECHAT_APPSECRET}`); // revoke ours
      assert.equal((await s.admin("/tags")).status, 200);
    } finally {
      await s.stop();
      backend.close();
    }
  });

  test("a killed and restarted stack keeps its KV and ledger state", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wxedge-restart-"));
    try {
      const rules = { welcome: { default: { type: "text", content: "still here" } } };
      let s = await startStack({}, { dir, followers: 6 });
      await s.admin("/rules", { method: "PUT", body: rules });
      for (let i = 0; i < 10 && !(await (await s.admin("/followers/import", { method: "POST", body: {} })).json()).done; i++);
      const sent = await (await s.admin("/broadcasts", { method: "POST", body: { id: "before-crash", segment: { kind: "all" }, message: { type: "text", content: "x" } } })).json();
      assert.equal(sent.status, "sent");
      const follow = await s.sim("/sim/follow", {});
      const quota = await (await s.admin("/quota")).json();
      await s.stop({ kill: true });

      s = await startStack({}, { dir, followers: 6 });
      try {
        assert.deepEqual(await (await s.admin("/rules")).json(), { ...rules, welcome: { ...rules.welcome, scenes: {} }, keywords: [], clicks: {}, default: null });
        const v = await (await s.admin(`/followers/${follow.openid}`)).json();
        assert.equal(v.record.following, true);
        assert.deepEqual(await (await s.admin("/quota")).json(), quota);
        const history = await (await s.admin("/broadcasts")).json();
        assert.deepEqual(history.broadcasts.map((b) => b.id), ["before-crash"]);
        const retried = await (await s.admin("/broadcasts", { method: "POST", body: { id: "before-crash", segment: { kind: "all" }, message: { type: "text", content: "x" } } })).json();
        assert.equal(retried.fresh, false, "the broadcast survived: a retry does not send again");
      } finally {
        await s.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
