// A CPU profile of the edge Worker's isolate under load, through workerd's
// inspector: where a track or a 100-event batch spends its time (wasm
// functions, JS glue, runtime calls), or the loader GET. Loopback only; stops by itself.
//
//   node bench/profile.mjs [track|batch|loader] [seconds]
// For function names instead of wasm-function[N], build with symbols first:
//   CARGO_PROFILE_RELEASE_STRIP=false bash scripts/build.sh
// PROFILE_OUT=file.cpuprofile also saves the profile (Chrome DevTools opens it).
import { Miniflare } from "miniflare";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { edgeWorker, root } from "../dev/stack.mjs";
import { luaScript, run } from "./wrk.mjs";

const scenario = process.argv[2] ?? "track";
const SECONDS = Number(process.argv[3] ?? 5);
const INSPECTOR_PORT = 9339;

const fixture = (name) => readFileSync(join(root, "bench", "fixtures", name), "utf8");
const TRACK = fixture("track.json");
const { path, body } = {
  track: { path: "/edge/api/v1/t", body: TRACK },
  loader: { path: "/edge/loader.js", method: "GET" },
  batch: { path: "/edge/api/v1/b", body: JSON.stringify({ batch: Array.from({ length: 100 }, () => JSON.parse(TRACK)), writeKey: "wk_bench" }) },
}[scenario];

const mf = new Miniflare({
  host: "127.0.0.1",
  port: 0,
  inspectorPort: INSPECTOR_PORT,
  cf: { country: "DE" },
  workers: [
    { ...edgeWorker({ vars: { WRITE_KEYS: "wk_bench" }, outbound: "upstream" }), routes: ["edge.bench/*"] },
    { name: "upstream", modules: true, scriptPath: join(root, "bench", "upstream.mjs"), compatibilityDate: "2026-04-01" },
  ],
});

/** Self and inclusive shares of the profile's samples, by function. */
function summarize(profile, rows = 25) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n) => n.callFrame.functionName || "(anonymous)";
  const self = new Map();
  const inclusive = new Map();
  for (const id of profile.samples) {
    const leaf = name(byId.get(id));
    self.set(leaf, (self.get(leaf) ?? 0) + 1);
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) seen.add(name(byId.get(at)));
    for (const n of seen) inclusive.set(n, (inclusive.get(n) ?? 0) + 1);
  }
  const table = (m) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, rows)
      .map(([n, c]) => `${((100 * c) / profile.samples.length).toFixed(1).padStart(5)}%  ${n}`)
      .join("\n");
  return `${profile.samples.length} samples\n\nself\n${table(self)}\n\ninclusive\n${table(inclusive)}`;
}

const wrk = (script, url, seconds) => run("wrk", ["-t1", "-c4", `-d${seconds}s`, "-s", script, url]);

try {
  const url = (await mf.ready).href.replace(/\/$/, "");
  const kv = await mf.getKVNamespace("DESTINATIONS", "edge");
  await kv.put("v1:destinations:wk_bench", fixture("destinations.json"));

  const targets = await (await fetch(`http://127.0.0.1:${INSPECTOR_PORT}/json/list`)).json();
  const target = targets.find((t) => t.title.endsWith("core:user:edge"));
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => ws.on("open", resolve).on("error", reject));
  const pending = new Map();
  ws.on("message", (m) => {
    const msg = JSON.parse(m);
    pending.get(msg.id)?.(msg.result);
    pending.delete(msg.id);
  });
  let id = 0;
  const call = (method, params = {}) =>
    new Promise((resolve) => {
      pending.set(++id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });

  const script = join(mkdtempSync(join(tmpdir(), "consent-edge-profile-")), "post.lua");
  const headers = { cookie: fixture("cookie.txt"), "content-type": "text/plain", authorization: "Basic " + Buffer.from("wk_bench:").toString("base64") };
  writeFileSync(script, luaScript(scenario === "loader" ? { method: "GET", headers: { cookie: headers.cookie } } : { method: "POST", body, headers }, "edge.bench"));
  await wrk(script, url + path, 2); // warm up, let V8 tier up
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: 50 });
  await call("Profiler.start");
  const load = await wrk(script, url + path, SECONDS);
  const { profile } = await call("Profiler.stop");
  ws.close();
  console.log(`${scenario}: ${load.match(/Requests\/sec:\s+\S+/)?.[0]}\n`);
  if (process.env.PROFILE_OUT) writeFileSync(process.env.PROFILE_OUT, JSON.stringify(profile));
  console.log(summarize(profile));
} finally {
  await mf.dispose();
}
