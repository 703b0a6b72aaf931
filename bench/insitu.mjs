// What each Worker's handler costs a request, measured without the HTTP
// server around it: one request to `bench/insitu-driver.mjs` runs a
// handler `--n` times on fresh requests (the handler's subrequests go through
// workerd to the upstream Worker, as in `bench/run.mjs`), and workerd's CPU
// time over that one request, divided by `--n`, is the handler's per-request
// cost. Every handler runs in the same isolate, with workerd on a core of its
// own where the box has two. Loopback only; stops by itself.
//
//   node bench/insitu.mjs [--n 3000] [--rounds 7] [--only loader,track] [--workers edge,js-read,js-json,js-cookie]
//
// `--n` is the requests per measurement; by default 15000 loader views and
// 3000 tracking posts, so that each measurement is over a second of CPU
// (the kernel counts CPU time in 10 ms ticks).
import { Miniflare } from "miniflare";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { root, wranglerVars } from "../dev/stack.mjs";
import { pin, workerdCpuSeconds } from "./workerd.mjs";
import { median } from "./wrk.mjs";

const args = Object.fromEntries(process.argv.slice(2).join(" ").split("--").filter(Boolean).map((a) => a.trim().split(/\s+/)));
const N = args.n ? { loader: Number(args.n), track: Number(args.n) } : { loader: 15000, track: 3000 };
const ROUNDS = Number(args.rounds ?? 7);
const SCENARIOS = args.only ? args.only.split(",") : ["loader", "track"];
// The streaming pass-through is the baseline of every ratio: always run.
const WORKERS = ["js", ...(args.workers ? args.workers.split(",") : ["edge", "js-read", "js-json", "js-cookie"]).filter((w) => w !== "js")];

const fixture = (name) => readFileSync(join(root, "bench", "fixtures", name), "utf8");
const COOKIE = fixture("cookie.txt");

const module = (type, path, contents) => ({ type, path: join(root, path), ...(contents === undefined ? {} : { contents }) });
const mf = new Miniflare({
  host: "127.0.0.1",
  port: 0,
  cf: { country: "DE" },
  workers: [
    {
      name: "driver",
      modulesRoot: root,
      modules: [
        module("ESModule", "bench/insitu-driver.mjs"),
        module("ESModule", "build/entry.js"),
        module("ESModule", "build/index.js"),
        module("CompiledWasm", "build/index_bg.wasm"),
        module("ESModule", "bench/passthrough.mjs"),
        module("Text", "bench/loader-template.txt", readFileSync(join(root, "static", "loader.min.js"), "utf8")),
        module("Text", "bench/fixtures/track.json"),
      ],
      compatibilityDate: "2026-04-01",
      kvNamespaces: ["DESTINATIONS"],
      bindings: { ...wranglerVars(), WRITE_KEYS: "wk_bench" },
      outboundService: "upstream",
    },
    { name: "upstream", modules: true, scriptPath: join(root, "bench", "upstream.mjs"), compatibilityDate: "2026-04-01" },
  ],
});

try {
  const url = (await mf.ready).href;
  const pinned = availableParallelism() > 1;
  if (pinned) await pin();
  // The destination list the Worker would have after a cron refresh.
  const kv = await mf.getKVNamespace("DESTINATIONS", "driver");
  await kv.put("v1:destinations:wk_bench", fixture("destinations.json"));
  const measure = async (worker, scenario, n) => {
    const before = await workerdCpuSeconds();
    const answer = await mf.dispatchFetch(`${url}?worker=${worker}&scenario=${scenario}&n=${n}`, { headers: { cookie: COOKIE } });
    const text = await answer.text();
    if (answer.status !== 200) throw new Error(text);
    return (((await workerdCpuSeconds()) - before) * 1e6) / n;
  };
  // Unmeasured first: the isolate's list, its JIT and wasm tiers, its memos.
  for (const scenario of SCENARIOS) for (const worker of WORKERS) await measure(worker, scenario, Math.ceil(N[scenario] / 5));
  const results = {};
  for (let round = 0; round < ROUNDS; round++) {
    const order = [...WORKERS.slice(round % WORKERS.length), ...WORKERS.slice(0, round % WORKERS.length)];
    for (const scenario of SCENARIOS) {
      for (const worker of order) (results[`${worker}:${scenario}`] ??= []).push(await measure(worker, scenario, N[scenario]));
    }
  }
  const counts = SCENARIOS.map((s) => `${N[s]} ${s === "loader" ? "views" : "posts"}`).join(", ");
  console.log(`\n${ROUNDS} rounds of ${counts} per handler, every handler in one isolate${pinned ? ", workerd on a core of its own" : ""}; medians; ratios to the pass-through JS handler\n`);
  console.log("| scenario | worker | CPU µs/request | ratio | rounds (min–max) |");
  console.log("|---|---|---|---|---|");
  for (const scenario of SCENARIOS) {
    const base = median(results[`js:${scenario}`]);
    for (const worker of WORKERS) {
      const xs = results[`${worker}:${scenario}`];
      const cpu = median(xs);
      console.log(`| ${scenario} | ${worker} | ${cpu.toFixed(1)} | ${(cpu / base).toFixed(2)}x | ${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)} |`);
    }
  }
} finally {
  await mf.dispose();
}
