// What the benchmarks share: a request as a wrk Lua script, running a
// command to completion, the median of their rounds.
import { spawn } from "node:child_process";

/**
 * A wrk script sending one request shape, to the Worker that answers `host`.
 * With `visitor`, a text in the cookie that each request replaces with a
 * number of its own: every request comes from a new visitor.
 */
export function luaScript({ method, body, headers, visitor }, host) {
  const lines = [`wrk.method = "${method}"`, `wrk.headers["Host"] = "${host}"`];
  for (const [k, v] of Object.entries(headers)) lines.push(`wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`);
  if (body) lines.push(`wrk.body = ${luaString(body)}`);
  if (visitor) {
    const [before, after] = headers.cookie.split(visitor);
    lines.push(
      `local before, after, n = ${luaString(before)}, ${luaString(after)}, 0`,
      "request = function()",
      "  n = n + 1",
      `  wrk.headers["cookie"] = before .. string.format("%0${visitor.length}d", n) .. after`,
      "  return wrk.format()",
      "end",
    );
  }
  return lines.join("\n") + "\n";
}

function luaString(s) {
  let level = 1;
  while (s.includes("]" + "=".repeat(level) + "]")) level++;
  const eq = "=".repeat(level);
  return `[${eq}[${s}]${eq}]`;
}

export function run(cmd, argv) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${out}`))));
  });
}

/** The median; of an even count, the mean of the middle two. */
export function median(xs) {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return Number.isInteger(mid) ? (sorted[mid - 1] + sorted[mid]) / 2 : sorted[Math.floor(mid)];
}
