// The wasm size budget: fails when the built Worker outgrows it. The budget
// is the measured size plus ~20% headroom (see BENCHMARKS.md); raise it only
// with a reason.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const BUDGET_GZIP_BYTES = 204 * 1024;

const wasm = readFileSync(new URL("../build/index_bg.wasm", import.meta.url));
const js = readFileSync(new URL("../build/index.js", import.meta.url));
const gz = (b) => gzipSync(b, { level: 9 }).length;
const kib = (n) => (n / 1024).toFixed(1) + " KiB";
console.log(`wasm ${kib(wasm.length)} raw, ${kib(gz(wasm))} gzipped (budget ${kib(BUDGET_GZIP_BYTES)}); JS glue ${kib(js.length)} raw, ${kib(gz(js))} gzipped`);
if (gz(wasm) > BUDGET_GZIP_BYTES) {
  console.error(`the wasm is over its size budget by ${kib(gz(wasm) - BUDGET_GZIP_BYTES)}`);
  process.exit(1);
}
