// The baseline the Worker is measured against: the same routes in plain
// JavaScript, with no consent logic. The loader is the same script with a
// fixed data block; events are streamed to Segment as they came. With BODY
// set to "read", each body is read whole first and sent on as it came (the
// least a Worker that looks at events must do); with "json" it is also
// JSON.parse'd and stringified (the least a JS Worker that edited events would
// do). With COOKIE set to "read", the loader reads the `Cookie` header first:
// the least any loader that depends on the visitor's consent must do.
import template from "./loader-template.txt";

const DATA = JSON.stringify({
  writeKey: "wk_bench",
  cdn: "http://bench/edge/cdn",
  apiHost: "bench/edge/api/v1",
  protocol: "http",
  consentUrl: "/edge/consent?wk=wk_bench",
  mode: "both",
  page: true,
  version: "0",
  consent: { collection: true, integrations: { All: false, "Segment.io": true }, groups: { C0001: true }, onetrust: "C0001:1" },
});
const LOADER = template.replace("EDGE_DATA", DATA);

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/edge/loader.js") {
      if (env.COOKIE === "read" && request.headers.get("cookie") === null) return new Response("no cookie", { status: 400 });
      return new Response(LOADER, {
        headers: { "content-type": "application/javascript; charset=utf-8", "cache-control": "private, max-age=0", vary: "Cookie" },
      });
    }
    if (url.pathname.startsWith("/edge/api/v1/") && request.method === "POST") {
      const upstream = await fetch("https://api.segment.io/v1/" + url.pathname.slice("/edge/api/v1/".length), {
        method: "POST",
        headers: {
          "content-type": request.headers.get("content-type") ?? "text/plain",
          authorization: request.headers.get("authorization") ?? "",
          "user-agent": request.headers.get("user-agent") ?? "",
        },
        body: await outgoing(request, env.BODY),
      });
      return new Response(upstream.body, { status: upstream.status, headers: { "content-type": "application/json" } });
    }
    return new Response("not found", { status: 404 });
  },
};

/** The body as it is sent on: streamed, read whole, or parsed and re-stringified. */
async function outgoing(request, mode) {
  if (mode === "read") return request.arrayBuffer();
  if (mode === "json") return JSON.stringify(JSON.parse(await request.text()));
  return request.body;
}
