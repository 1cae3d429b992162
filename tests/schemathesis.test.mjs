// Schemathesis (property-based API testing from the OpenAPI document) against the local stack:
// generated requests for every documented operation, none may get a server error.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { readFileSync } from "node:fs";
import { startStack, ROOT } from "./support/stack.mjs";

test("schemathesis finds no server error in /api/openapi.json's operations", async () => {
  assert.ok(process.env.WXEDGE_PYTHON, "WXEDGE_PYTHON must point at the venv with schemathesis (scripts/test.sh sets it)");
  const st = join(dirname(process.env.WXEDGE_PYTHON), "st");
  const s = await startStack();
  try {
    const args = ["run", `${s.base}/api/openapi.json`, "--url", s.base, "--checks", "not_a_server_error",
      "--header", `Authorization: Bearer ${s.config.ADMIN_TOKEN}`, "--max-examples", process.env.SCHEMATHESIS_EXAMPLES || "15",
      "--request-timeout", "30", "--seed", "20261121"];
    const out = await new Promise((resolve) => {
      const p = spawn(st, args, { stdio: ["ignore", "pipe", "pipe"] });
      let text = "";
      p.stdout.on("data", (d) => (text += d));
      p.stderr.on("data", (d) => (text += d));
      p.on("exit", (code) => resolve({ code, text }));
    });
    const summary = out.text.split("\n").filter((l) => /generated|passed|Server error|Tested:/.test(l)).join("\n");
    console.log(summary);
    assert.equal(out.code, 0, out.text.slice(-4000));
    // Every documented operation is exercised (one may be left out: the dialog's WebSocket
    // upgrade, which schemathesis does not speak); counted from the document, not hard-coded.
    const doc = JSON.parse(readFileSync(join(ROOT, "www", "openapi.json"), "utf8"));
    const operations = Object.values(doc.paths).flatMap((p) => Object.keys(p).filter((m) => ["get", "post", "put", "delete", "patch"].includes(m))).length;
    const tested = Number((out.text.match(/Tested: (\d+)/) || [])[1]);
    assert.ok(tested >= operations - 1, `schemathesis tested ${tested} of the ${operations} documented operations`);
  } finally {
    await s.stop();
  }
});
