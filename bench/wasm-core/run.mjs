// Times the core's per-request work as wasm in Node's V8. The Workers glue is
// linked in but never called: its imports are stubs that throw.
import { readFileSync } from "node:fs";

const wasm = readFileSync(new URL("target/wasm32-unknown-unknown/release/consent_edge_wasm_core_bench.wasm", import.meta.url));
const module = new WebAssembly.Module(wasm);
const imports = {};
for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
  if (kind !== "function") throw new Error(`unexpected ${kind} import ${from}.${name}`);
  (imports[from] ??= {})[name] = () => {
    throw new Error(`${from}.${name} called`);
  };
}
const { exports } = new WebAssembly.Instance(module, imports);

/** Median time of one call of `f`, over 7 rounds of `n` calls, after a warm-up round (V8 tiers up). */
function median(n, f) {
  const times = [];
  for (let round = 0; round < 8; round++) {
    const started = performance.now();
    for (let i = 0; i < n; i++) f();
    if (round > 0) times.push((performance.now() - started) / n);
  }
  return times.sort((a, b) => a - b)[3];
}

// One call per request, as the Worker makes it.
const track = median(5000, () => exports.track(1));
console.log(`tracking post (cookie resolved, 3.6 KB event rewritten) as wasm in V8: ${(track * 1000).toFixed(1)} µs (median of 7 rounds of 5000 calls)`);
const batch = median(50, () => exports.rewrite_batch(1));
console.log(`batch rewrite as wasm in V8, 100 × 3.6 KB events (361 KB): ${batch.toFixed(3)} ms (median of 7 rounds of 50)`);
const alternating = median(50, () => exports.rewrite_alternating_batch(1));
console.log(`the same batch, no event repeating the integrations of the one before: ${alternating.toFixed(3)} ms (median of 7 rounds of 50)`);
