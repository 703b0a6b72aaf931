// `make dev`: the Worker as built, in workerd, on http://127.0.0.1:8787 with
// local KV (kept in .wrangler/state), the demo page, and the fake Segment as
// its only upstream. Needs no network.
import { join } from "node:path";
import { startStack, wranglerVars, root } from "./stack.mjs";

const port = Number(process.env.PORT ?? 8787);
const writeKeys = process.env.WRITE_KEYS || wranglerVars().WRITE_KEYS || "demo_write_key";
const stack = await startStack({ port, vars: { WRITE_KEYS: writeKeys }, kvPersist: join(root, ".wrangler", "state", "kv") });
await stack.cron();
const refresh = setInterval(() => stack.cron(), 10 * 60 * 1000);

const prefix = stack.vars.PATH_PREFIX ?? "/edge";
console.log(`
consent-edge is running (local, offline)
  demo page   ${stack.url}/
  loader      ${stack.url}${prefix}/loader.js
  consent     ${stack.url}${prefix}/consent
  health      ${stack.url}${prefix}/healthz
  write keys  ${writeKeys}
  Segment     a local fake at ${stack.segment.url}
Ctrl-C stops it.`);

async function stop() {
  clearInterval(refresh);
  await stack.dispose();
  process.exit(0);
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
