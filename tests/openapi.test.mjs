// The OpenAPI document is served, is OpenAPI 3.1, and every operation in it is a real route.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startStack } from "./support/stack.mjs";

describe("OpenAPI", () => {
  let s;
  before(async () => { s = await startStack(); });
  after(async () => { await s?.stop(); });

  test("served at /api/openapi.json and every documented operation exists", async () => {
    const r = await fetch(`${s.base}/api/openapi.json`);
    assert.equal(r.status, 200);
    const doc = await r.json();
    assert.equal(doc.openapi, "3.1.0");
    assert.ok(Object.keys(doc.paths).length >= 20);
    let checked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (!path.startsWith("/api/admin/")) continue;
      for (const [method, op] of Object.entries(ops)) {
        const url = s.base + path.replace(/\{[^}]+\}/g, (p) => (p === "{openid}" || p === "{id}" && path.includes("broadcasts") ? "oNobody" : "1"));
        const init = { method: method.toUpperCase(), headers: { authorization: `Bearer ${s.config.ADMIN_TOKEN}` } };
        if (op.requestBody) init.body = "{not json";
        const res = await fetch(url, init);
        const body = await res.json().catch(() => ({}));
        assert.notEqual(body.message, "no such admin route", `${method} ${path}`);
        // A dummy id WeChat refuses is a documented 422; no operation may answer 5xx here.
        assert.ok(res.status < 500, `${method} ${path} answered ${res.status}: ${JSON.stringify(body)}`);
        if (op.requestBody) assert.equal(res.status, 400, `${method} ${path} with broken JSON`);
        assert.ok(String(res.status) in op.responses || res.status === 404, `${method} ${path}: ${res.status} is not documented`);
        checked++;
      }
    }
    assert.ok(checked >= 30, `checked ${checked} operations`);
  });
});
