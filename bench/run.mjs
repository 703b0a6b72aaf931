// Worker-level benchmark: the built Worker against a plain JavaScript
// pass-through Worker (same routes, no consent logic), one that reads each
// body whole before sending it on, one that also JSON.parse/stringify's it
// and one whose loader reads the `Cookie` header, all in the same workerd, in
// front of the same upstream Worker, under the same load generator (wrk), in
// one run.
// Loopback only; every run stops by itself.
//
//   node bench/run.mjs [--seconds 8] [--connections 8] [--rounds 3] [--warmup 2] [--pin] [--only loader,loader-visitors,track,batch100,batch100-mixed] [--workers edge,edge-metrics]
//
// Every Worker first serves each scenario unmeasured for `--warmup` seconds
// (its JIT and wasm tiers, its memos, the list in its isolate), and the order
// the Workers run in turns by one each round, so that neither the first
// round's warm-up nor a fixed neighbour is counted against one Worker.
import { Miniflare } from "miniflare";
import http from "node:http";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { edgeWorker, root } from "../dev/stack.mjs";
import { luaScript, median, run } from "./wrk.mjs";
import { pin, workerdCpuSeconds } from "./workerd.mjs";

const args = Object.fromEntries(process.argv.slice(2).join(" ").split("--").filter(Boolean).map((a) => a.trim().split(/\s+/)));
const SECONDS = Number(args.seconds ?? 8);
const CONNECTIONS = Number(args.connections ?? 8);
const ROUNDS = Number(args.rounds ?? 3);
const WARMUP = Number(args.warmup ?? 2);
const ONLY = args.only ? args.only.split(",") : null;
const PIN = "pin" in args;

const fixture = (name) => readFileSync(join(root, "bench", "fixtures", name), "utf8");
const COOKIE = fixture("cookie.txt");
const TRACK = fixture("track.json");
const BATCH = JSON.stringify({ batch: Array.from({ length: 100 }, () => JSON.parse(TRACK)), writeKey: "wk_bench", sentAt: "2026-11-25T10:00:00.120Z" });
// The same 100 events, each with its own messageId, and every other one's
// `integrations` stamped differently (one destination switched on): no event
// repeats the stamps of the one before, the worst case for the batch rewrite.
const MIXED = JSON.stringify({
  batch: Array.from({ length: 100 }, (_, i) => {
    const event = JSON.parse(TRACK);
    event.messageId = `ajs-next-bench-${i}`;
    if (i % 2) event.integrations.Heap = true;
    return event;
  }),
  writeKey: "wk_bench",
  sentAt: "2026-11-25T10:00:00.120Z",
});
const AUTH = "Basic " + Buffer.from("wk_bench:").toString("base64");

const WORKERS = {
  edge: "consent-edge (Rust/wasm)",
  "edge-metrics": "consent-edge, metrics on",
  js: "pass-through JS",
  "js-read": "JS reading the body",
  "js-json": "JS + JSON.parse/stringify",
  "js-cookie": "JS reading the cookie",
};

// The streaming pass-through is the baseline of every ratio: always run.
const RUN = args.workers ? ["js", ...args.workers.split(",").filter((w) => w !== "js")] : Object.keys(WORKERS);

const SCENARIOS = [
  // The floor: an unknown path, answered 404 by each Worker with no work at all.
  { name: "404", method: "GET", path: "/edge/nothing-here", headers: {}, status: 404 },
  { name: "loader", method: "GET", path: "/edge/loader.js", headers: { cookie: COOKIE } },
  // The same view, each from a new visitor with the same choices (its own
  // OneTrust consentId): the isolate's memo of visitors never helps.
  { name: "loader-visitors", method: "GET", path: "/edge/loader.js", headers: { cookie: COOKIE }, visitor: COOKIE.match(/consentId=([^&;]+)/)[1] },
  { name: "track", method: "POST", path: "/edge/api/v1/t", body: TRACK, headers: { cookie: COOKIE, "content-type": "text/plain", authorization: AUTH } },
  { name: "batch100", method: "POST", path: "/edge/api/v1/b", body: BATCH, headers: { cookie: COOKIE, "content-type": "text/plain", authorization: AUTH } },
  { name: "batch100-mixed", method: "POST", path: "/edge/api/v1/b", body: MIXED, headers: { cookie: COOKIE, "content-type": "text/plain", authorization: AUTH } },
];

function ms(text) {
  const m = text.match(/([\d.]+)(us|ms|s)/);
  if (!m) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
}

function parseWrk(out) {
  const p50 = out.match(/\n\s+50%\s+(\S+)/);
  const p99 = out.match(/\n\s+99%\s+(\S+)/);
  const rps = out.match(/Requests\/sec:\s+([\d.]+)/);
  const non2xx = out.match(/Non-2xx or 3xx responses:\s+(\d+)/);
  return { p50: ms(p50?.[1] ?? ""), p99: ms(p99?.[1] ?? ""), rps: Number(rps?.[1]), non2xx: Number(non2xx?.[1] ?? 0) };
}

/** One request with its own Host header (fetch drops it), to pick the worker. */
function request(base, { method, path, headers, body }, host) {
  return new Promise((resolve, reject) => {
    const req = http.request(base + path, { method, headers: { ...headers, host } }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function main() {
  const template = readFileSync(join(root, "static", "loader.min.js"), "utf8");
  const dir = mkdtempSync(join(tmpdir(), "consent-edge-bench-"));
  const passthrough = (name, bindings = {}) => ({
    name,
    modules: [
      { type: "ESModule", path: join(root, "bench", "passthrough.mjs"), contents: readFileSync(join(root, "bench", "passthrough.mjs"), "utf8") },
      { type: "Text", path: join(root, "bench", "loader-template.txt"), contents: template },
    ],
    compatibilityDate: "2026-04-01",
    bindings,
    routes: [`${name}.bench/*`],
    outboundService: "upstream",
  });
  const mf = new Miniflare({
    host: "127.0.0.1",
    port: 0,
    cf: { country: "DE" },
    workers: [
      { ...edgeWorker({ vars: { WRITE_KEYS: "wk_bench" }, outbound: "upstream" }), routes: ["edge.bench/*"] },
      // The same Worker with Miniflare's own Analytics Engine dataset bound
      // (it takes each data point and discards it): what metrics cost the Worker.
      { ...edgeWorker({ vars: { WRITE_KEYS: "wk_bench" }, outbound: "upstream", name: "edge-metrics", metrics: "local" }), routes: ["edge-metrics.bench/*"] },
      passthrough("js"),
      passthrough("js-read", { BODY: "read" }),
      passthrough("js-json", { BODY: "json" }),
      passthrough("js-cookie", { COOKIE: "read" }),
      { name: "upstream", modules: true, scriptPath: join(root, "bench", "upstream.mjs"), compatibilityDate: "2026-04-01" },
    ],
  });
  const url = (await mf.ready).href.replace(/\/$/, "");
  if (PIN) await pin();
  // The destination list the Worker would have after a cron refresh.
  const kv = await mf.getKVNamespace("DESTINATIONS", "edge");
  await kv.put("v1:destinations:wk_bench", fixture("destinations.json"));

  const results = {};
  try {
    // Sizes first (and a check that every worker answers).
    for (const worker of RUN) {
      for (const s of SCENARIOS) {
        const { status, body } = await request(url, s, `${worker}.bench`);
        if (status !== (s.status ?? 200)) throw new Error(`${worker} ${s.name}: HTTP ${status} ${body}`);
        if (s.name === "loader") results[`${worker}:loaderGzip`] = gzipSync(body).length;
      }
    }
    const scenarios = SCENARIOS.filter((s) => !ONLY || ONLY.includes(s.name));
    const scriptFor = (s, worker) => {
      const script = join(dir, `${worker}-${s.name}.lua`);
      writeFileSync(script, luaScript(s, `${worker}.bench`));
      return script;
    };
    if (WARMUP > 0) {
      for (const s of scenarios) {
        for (const worker of RUN) await run("wrk", ["-t1", `-c${CONNECTIONS}`, `-d${WARMUP}s`, "-s", scriptFor(s, worker), url + s.path]);
      }
    }
    for (let round = 0; round < ROUNDS; round++) {
      const order = [...RUN.slice(round % RUN.length), ...RUN.slice(0, round % RUN.length)];
      for (const s of scenarios) {
        for (const worker of order) {
          const script = scriptFor(s, worker);
          const cpuBefore = await workerdCpuSeconds();
          const out = await run("wrk", ["-t1", `-c${CONNECTIONS}`, `-d${SECONDS}s`, "--latency", "-s", script, url + s.path]);
          const cpu = (await workerdCpuSeconds()) - cpuBefore;
          const r = parseWrk(out);
          r.cpuMsPerRequest = (cpu * 1000) / (r.rps * SECONDS);
          (results[`${worker}:${s.name}`] ??= []).push(r);
          process.stderr.write(`round ${round + 1} ${s.name.padEnd(8)} ${worker.padEnd(7)} p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  ${r.rps.toFixed(0)} req/s  ${r.non2xx} non-2xx\n`);
          if (!s.status && r.non2xx) throw new Error(`${worker} ${s.name}: ${r.non2xx} failed responses`);
        }
      }
    }
  } finally {
    await mf.dispose();
  }

  const rows = [];
  for (const s of SCENARIOS.filter((s) => !ONLY || ONLY.includes(s.name))) {
    const base = results[`js:${s.name}`];
    const baseP50 = median(base.map((r) => r.p50));
    const baseRps = median(base.map((r) => r.rps));
    for (const worker of RUN) {
      const rs = results[`${worker}:${s.name}`];
      const p50 = median(rs.map((r) => r.p50));
      const p99 = median(rs.map((r) => r.p99));
      const rps = median(rs.map((r) => r.rps));
      const cpu = median(rs.map((r) => r.cpuMsPerRequest));
      rows.push(`| ${s.name} | ${WORKERS[worker]} | ${p50.toFixed(2)} | ${p99.toFixed(2)} | ${rps.toFixed(0)} | ${(p50 / baseP50).toFixed(2)}x | ${(rps / baseRps).toFixed(2)}x | ${cpu.toFixed(3)} |`);
    }
  }
  const pinned = PIN ? ", workerd on a core of its own" : "";
  console.log(`\n${ROUNDS} rounds × ${SECONDS} s after ${WARMUP} s of warm-up, ${CONNECTIONS} connections, wrk 1 thread${pinned}; medians; ratios to the pass-through JS Worker\n`);
  console.log("| scenario | worker | p50 ms | p99 ms | req/s | p50 ratio | req/s ratio | workerd CPU ms/req |");
  console.log("|---|---|---|---|---|---|---|---|");
  console.log(rows.join("\n"));
  console.log("\nmetrics on vs off (consent-edge, same run, medians):");
  for (const s of SCENARIOS.filter((s) => (!ONLY || ONLY.includes(s.name)) && RUN.includes("edge") && RUN.includes("edge-metrics"))) {
    const of = (worker, field) => median(results[`${worker}:${s.name}`].map((r) => r[field]));
    const ratio = (field) => (of("edge-metrics", field) / of("edge", field)).toFixed(3);
    console.log(`  ${s.name.padEnd(8)} CPU ${ratio("cpuMsPerRequest")}x  p50 ${ratio("p50")}x  req/s ${ratio("rps")}x`);
  }
  console.log(`\nloader response gzipped: consent-edge ${results["edge:loaderGzip"]} B, pass-through ${results["js:loaderGzip"]} B`);
}

await main();
