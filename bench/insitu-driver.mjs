// The Worker that `bench/insitu.mjs` measures with: each request to it runs
// one Worker's `fetch` handler `n` times on fresh requests of one scenario,
// awaiting each answer and reading its body, inside that one request. No
// HTTP server, connection or load generator between the calls; the handler's
// subrequests still go through workerd to the upstream Worker.
//
//   GET /?worker=edge&scenario=track&n=3000
import edge from "../build/entry.js";
import passthrough from "./passthrough.mjs";
import TRACK from "./fixtures/track.json";

const HANDLERS = {
  edge: [edge, {}],
  js: [passthrough, {}],
  "js-read": [passthrough, { BODY: "read" }],
  "js-json": [passthrough, { BODY: "json" }],
  "js-cookie": [passthrough, { COOKIE: "read" }],
};

const AUTH = "Basic " + btoa("wk_bench:");

/** A fresh request of `scenario`, as a browser on the site would send it. */
function visitorRequest(scenario, cookie) {
  if (scenario === "loader") return new Request("http://bench/edge/loader.js", { headers: { cookie } });
  return new Request("http://bench/edge/api/v1/t", { method: "POST", body: TRACK, headers: { cookie, "content-type": "text/plain", authorization: AUTH } });
}

export default {
  async fetch(request, env, ctx) {
    const params = new URL(request.url).searchParams;
    const [handler, bindings] = HANDLERS[params.get("worker")] ?? [];
    const scenario = params.get("scenario");
    if (!handler || !["loader", "track"].includes(scenario)) return new Response("unknown worker or scenario", { status: 400 });
    const n = Number(params.get("n") ?? 1);
    const cookie = request.headers.get("cookie");
    const workerEnv = { ...env, ...bindings };
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const answer = await handler.fetch(visitorRequest(scenario, cookie), workerEnv, ctx);
      const body = await answer.arrayBuffer();
      if (answer.status !== 200) return new Response(`${params.get("worker")} ${scenario}: HTTP ${answer.status}`, { status: 500 });
      bytes += body.byteLength;
    }
    return new Response(String(bytes));
  },
};
