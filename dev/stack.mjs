// The local stack shared by `make dev`, the Worker tests, the browser tests
// and the benchmarks: the built Worker (build/entry.js, build/index.js + wasm) in workerd via
// Miniflare, with a real KV namespace, behind a tiny "site" worker that serves
// static/ pages on the same origin, and the fake Segment as the only upstream.

import { Miniflare } from "miniflare";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { startFakeSegment } from "./fake-segment.mjs";
import { POINT_PREFIX } from "./metrics-recorder.mjs";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const buildDir = join(root, "build");
export const CRON = "*/10 * * * *";

/** The `[vars]` of wrangler.toml, so local runs use the documented defaults. */
export function wranglerVars() {
  const toml = readFileSync(join(root, "wrangler.toml"), "utf8");
  const section = toml.split(/^\[vars\]\s*$/m)[1]?.split(/^\[/m)[0] ?? "";
  const vars = {};
  for (const line of section.split("\n")) {
    const m = line.match(/^\s*([A-Z_]+)\s*=\s*(.+?)\s*$/);
    if (m) vars[m[1]] = JSON.parse(m[2].replace(/^'(.*)'$/, (_, s) => JSON.stringify(s)));
  }
  return vars;
}

/** The site's files: static/*.html, and the stand-in OneTrust SDK. */
function pages() {
  const dir = join(root, "static");
  const out = { "/fake-onetrust.js": readFileSync(join(root, "dev", "fake-onetrust.js"), "utf8") };
  for (const file of readdirSync(dir)) {
    if (file.endsWith(".html")) out["/" + file] = readFileSync(join(dir, file), "utf8");
  }
  return out;
}

/** The Worker that implements the recording dataset (`dev/metrics-recorder.mjs`). */
export const METRICS_RECORDER = "metrics-recorder";

/**
 * The `CONSENT_METRICS` binding for `metrics`: none (the default, as in
 * wrangler.toml), `"local"` (Miniflare's Analytics Engine, which discards
 * points), `"record"` or `"throw"` (the recording stand-in, which needs the
 * `METRICS_RECORDER` worker beside it).
 */
function metricsBinding(metrics) {
  switch (metrics) {
    case undefined:
      return {};
    case "local":
      return { analyticsEngineDatasets: { CONSENT_METRICS: { dataset: "consent_edge" } } };
    case "record":
    case "throw":
      return { wrappedBindings: { CONSENT_METRICS: { scriptName: METRICS_RECORDER, bindings: { FAIL: metrics === "throw" } } } };
    default:
      throw new Error(`unknown metrics binding ${metrics}`);
  }
}

/**
 * Miniflare options for the built Worker alone; `metrics`: its dataset (see
 * `metricsBinding`); `kvOps`: its KV binding goes through dev/kv-ops.mjs.
 */
export function edgeWorker({ vars = {}, outbound, name = "edge", metrics, kvOps = false } = {}) {
  if (!existsSync(join(buildDir, "entry.js"))) throw new Error("build/entry.js is missing: run `make build` first");
  return {
    name,
    modules: true,
    scriptPath: join(buildDir, "entry.js"),
    modulesRoot: buildDir,
    modulesRules: [
      { type: "ESModule", include: ["**/*.js"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: "2026-04-01",
    ...metricsBinding(metrics),
    ...(kvOps ? {} : { kvNamespaces: ["DESTINATIONS"] }),
    // Both stand-ins are wrapped bindings: one object holds them.
    wrappedBindings: {
      ...metricsBinding(metrics).wrappedBindings,
      ...(kvOps ? { DESTINATIONS: { scriptName: "kv-ops" } } : {}),
    },
    bindings: vars,
    outboundService: outbound,
  };
}

/**
 * Starts the stack. `vars` override wrangler.toml's; `cf` is the request
 * metadata workerd reports (country…); `port` 0 picks a free one; `metrics`
 * binds a dataset (see `metricsBinding`). With `captureLogs`, or `metrics`
 * `"record"` or `"throw"`, workerd's log lines are collected instead of
 * printed: `points` are the recorded data points, `logs` every other line.
 * `kvOps` records the Worker's every KV get, put and delete (`stack.kvOps()`).
 */
export async function startStack({ vars = {}, cf = { country: "DE" }, port = 0, kvPersist = false, segment, metrics, captureLogs = false, kvOps = false } = {}) {
  const allVars = { ...wranglerVars(), ...vars };
  const ownSegment = !segment;
  segment ??= await startFakeSegment();
  // Every outbound request of the Worker (cdn.segment.com, api.segment.io, …)
  // goes to the fake, whatever host it names.
  const outbound = { external: { address: segment.address, http: {} } };
  const recording = metrics === "record" || metrics === "throw";
  const points = [];
  const logs = [];
  captureLogs ||= recording;
  const handleStructuredLogs = ({ level, message }) => {
    if (message.startsWith(POINT_PREFIX)) points.push(JSON.parse(message.slice(POINT_PREFIX.length)));
    else logs.push({ level, message });
  };
  const mf = new Miniflare({
    host: "127.0.0.1",
    port,
    cf,
    kvPersist,
    ...(captureLogs ? { handleStructuredLogs } : {}),
    workers: [
      {
        name: "site",
        modules: true,
        scriptPath: join(root, "dev", "site.mjs"),
        compatibilityDate: "2026-04-01",
        bindings: { PAGES: pages(), PREFIX: allVars.PATH_PREFIX ?? "/edge" },
        serviceBindings: { EDGE: "edge", SEGMENT: outbound },
      },
      edgeWorker({ vars: allVars, outbound, metrics, kvOps }),
      ...(recording ? [{ name: METRICS_RECORDER, modules: true, scriptPath: join(root, "dev", "metrics-recorder.mjs") }] : []),
      ...(kvOps
        ? [{ name: "kv-ops", modules: true, scriptPath: join(root, "dev", "kv-ops.mjs"), kvNamespaces: { INNER: "DESTINATIONS", OPS: "KV_OPS" } }]
        : []),
    ],
  });
  const url = await mf.ready;
  return {
    mf,
    url: url.href.replace(/\/$/, ""),
    segment,
    vars: allVars,
    points,
    logs,
    /** Fires the Worker's cron trigger, as Cloudflare would. */
    async cron() {
      const edge = await mf.getWorker("edge");
      return edge.scheduled({ cron: CRON });
    },
    async kv() {
      return kvOps ? mf.getKVNamespace("INNER", "kv-ops") : mf.getKVNamespace("DESTINATIONS", "edge");
    },
    /** With `kvOps`: the Worker's KV operations so far, as [op, key] in no particular order. */
    async kvOps() {
      const ops = await mf.getKVNamespace("OPS", "kv-ops");
      const names = [];
      let cursor;
      do {
        const page = await ops.list({ cursor });
        names.push(...page.keys.map((k) => k.name));
        cursor = page.list_complete ? undefined : page.cursor;
      } while (cursor);
      return names.map((name) => name.split("|").slice(0, 2));
    },
    async dispose() {
      await mf.dispose();
      if (ownSegment) await segment.close();
    },
  };
}
