// QR code to SVG for a typical follow URL: the widget's wasm (the same build the browser loads)
// vs the npm libraries `qrcode` and `qrcode-generator`, all in node, one after the other.
// Prints JSON {name: ns_per_code}. Usage: node bench/qr_bench.mjs [SECONDS]
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import init, { svgOf } from "../dist/widget-pkg/widget.js";

const require = createRequire(import.meta.url);
const QRCode = require("qrcode");
const svgTag = require("qrcode/lib/renderer/svg-tag.js");
const qrcodeGenerator = require("qrcode-generator");

const seconds = Number(process.argv[2] || 2);
await init({ module_or_path: readFileSync(new URL("../dist/widget/widget_bg.wasm", import.meta.url)) });
const url = "http://weixin.qq.com/q/02V0Zx9Xq-eRe1Bkmx1ABC";

const cases = {
  wxedge: () => svgOf(url),
  qrcode: () => svgTag.render(QRCode.create(url, { errorCorrectionLevel: "M" }), { margin: 4 }),
  "qrcode-generator": () => { const q = qrcodeGenerator(0, "M"); q.addData(url); q.make(); return q.createSvgTag(); },
};
const out = {};
for (const [name, f] of Object.entries(cases)) {
  if (!/<svg/.test(f())) throw new Error(`${name} drew no SVG`);
  for (let i = 0; i < 200; i++) f(); // warm up
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(seconds * 1e9);
  while (process.hrtime.bigint() < end) { f(); n++; }
  out[name] = Number(process.hrtime.bigint() - start) / n;
}
console.log(JSON.stringify(out));
