// Misconfiguration is one clear error naming the setting, from the worker and from `make dev`'s check.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join as joinPath } from "node:path";
import { startStack, SIM, TEST_CONFIG, ROOT } from "./support/stack.mjs";

test("the worker names a malformed setting instead of crashing", async () => {
  const s = await startStack({ WECHAT_TOKEN: "has spaces", ADMIN_TOKEN: null });
  try {
    for (const path of ["/api/health", "/wechat?signature=x&timestamp=1&nonce=2&echostr=e"]) {
      const r = await fetch(s.base + path);
      assert.equal(r.status, 500, path);
      const body = await r.json();
      assert.equal(body.error, "config");
      assert.match(body.message, /WECHAT_TOKEN/);
    }
    const site = await fetch(s.base + "/");
    assert.equal(site.status, 200, "the static site still works");
  } finally {
    await s.stop();
  }
});

test("check-config (run by make dev) names the setting and exits non-zero", () => {
  const env = { PATH: process.env.PATH, ...TEST_CONFIG, WECHAT_ACCOUNT_KIND: "enterprise" };
  const bad = spawnSync(SIM, ["check-config"], { env, encoding: "utf8" });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /WECHAT_ACCOUNT_KIND/);
  const good = spawnSync(SIM, ["check-config"], { env: { ...env, WECHAT_ACCOUNT_KIND: "subscription" }, encoding: "utf8" });
  assert.equal(good.status, 0, good.stderr);
  assert.match(good.stdout, /configuration ok: subscription/);
});

test("the .dev.vars.example a fresh machine's make dev copies passes check-config", () => {
  const r = spawnSync(SIM, ["check-config", "--env-file", joinPath(ROOT, ".dev.vars.example")], { env: { PATH: process.env.PATH }, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /configuration ok/);
});

test("the README's configuration table lists every setting the worker reads", async () => {
  const { readFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { ROOT } = await import("./support/stack.mjs");
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const core = readFileSync(join(ROOT, "core", "src", "config.rs"), "utf8");
  const names = [...core.matchAll(/Setting \{ name: "([A-Z_]+)"/g)].map((m) => m[1]);
  assert.ok(names.length >= 10, "settings found in core/src/config.rs");
  for (const n of names) assert.match(readme, new RegExp("\\| `" + n + "` \\|"), `README documents ${n}`);
});
