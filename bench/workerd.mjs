// The benchmarks' hold on the workerd their Miniflare started: the CPU time
// it has used, and which core it runs on.
import { run } from "./wrk.mjs";

/** CPU seconds used so far by this process's workerd (Linux; not other runs' on the same box). */
export async function workerdCpuSeconds() {
  const out = await run("sh", ["-c", `for p in $(pgrep -P ${process.pid} -f 'workerd serve'); do cat /proc/$p/stat; done`]);
  const ticks = out.trim().split("\n").filter(Boolean).reduce((sum, line) => {
    const fields = line.slice(line.lastIndexOf(")") + 2).split(" ");
    return sum + Number(fields[11]) + Number(fields[12]); // utime + stime
  }, 0);
  return ticks / 100;
}

/**
 * workerd (every thread) on the second core; this process on the first, and
 * with it what it starts (wrk), which inherits its affinity: the load
 * generator never takes CPU from the Workers it measures, on a box with two cores.
 */
export async function pin() {
  const workerd = (await run("pgrep", ["-P", String(process.pid), "-f", "workerd serve"])).trim().split("\n");
  for (const pid of workerd) await run("taskset", ["-a", "-p", "-c", "1", pid]);
  await run("taskset", ["-a", "-p", "-c", "0", String(process.pid)]);
}
