// Shortens the widget's import and export names in the wasm-bindgen glue to match a wasm that
// `wasm-opt --minify-imports-and-exports-and-modules` renamed (it prints the map as JSON).
//
// Why: wasm-bindgen names every import `__wbg_<name>_<16 hex digits>` and every closure shim after
// its full Rust type; each name is written twice (in the wasm and in the glue) and the hashes do
// not compress. Shortening them saves about 3 KB gzip of the ~40 KB every visitor downloads.
//
// Usage: node scripts/short-wasm-names.mjs <map.json> <glue.js> <renamed.wasm>
// Rewrites glue.js in place; fails loudly when the glue does not look as expected (a new
// wasm-bindgen), so a mismatch can never ship.
import fs from "node:fs";

const [mapFile, glueFile, wasmFile] = process.argv.slice(2);
const map = JSON.parse(fs.readFileSync(mapFile, "utf8"));
let js = fs.readFileSync(glueFile, "utf8");
const escape = (s) => s.replace(/[$]/g, "\\$");

const modules = new Set(map.imports.map(([module]) => module));
const wasm = new WebAssembly.Module(fs.readFileSync(wasmFile));
const renamedModules = new Set(WebAssembly.Module.imports(wasm).map((i) => i.module));
if (modules.size !== 1 || renamedModules.size !== 1) throw new Error(`expected one import module, got ${[...modules]} -> ${[...renamedModules]}`);
const [from] = modules;
const [to] = renamedModules;
const key = `${JSON.stringify(from)}: import0`;
if (!js.includes(key)) throw new Error(`the glue has no ${key}`);
js = js.replace(key, `${JSON.stringify(to)}: import0`);

// Imports: the keys of the import object, each defined exactly once.
for (const [, name, short] of map.imports) {
  const re = new RegExp(`(?<=[\\s{,])${escape(name)}(?=: )`, "g");
  const hits = js.match(re)?.length ?? 0;
  if (hits !== 1) throw new Error(`import ${name}: ${hits} definitions in the glue`);
  js = js.replace(re, JSON.stringify(short));
}

// Exports: every `wasm.<name>` use.
for (const [name, short] of map.exports) {
  js = js.replace(new RegExp(`\\bwasm\\.${escape(name)}\\b`, "g"), `wasm[${JSON.stringify(short)}]`);
}
const left = js.match(/\bwasm\.(?!instance\b)[A-Za-z_$][\w$]*/g);
if (left) throw new Error(`the glue still uses exports the map does not rename: ${[...new Set(left)]}`);

// Every import the renamed wasm asks for is defined.
for (const { name } of WebAssembly.Module.imports(wasm)) {
  if (!js.includes(`${JSON.stringify(name)}: `)) throw new Error(`the glue does not define import ${name}`);
}
fs.writeFileSync(glueFile, js);
