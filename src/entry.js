// The Worker's entry module (wrangler's `main`, copied next to worker-build's
// output by scripts/build.sh). It moves data and decides nothing.
//
// Tracking posts are the hot path: their headers are read here, in JS, and
// the post crosses into wasm in one synchronous call (`track_post`), which
// decides it and hands back what to send upstream; this module sends it, and
// a second call (`track_answer`) gives the headers of the visitor's answer.
// A post's headers cross as one `name\nvalue\n…` string each way, not a call
// per header. The loader (a GET on every page view) is likewise one synchronous
// call (`loader_get`) once this isolate has the write key's destination list;
// its status, `Headers` and body are one JS value kept with the rendered script.
// Everything else, and any POST that is not a tracking post, goes to the Rust
// `fetch` handler.
//
// Every call goes through an instance of worker-build's entrypoint class, so
// its recovery from a wasm trap (a fresh wasm instance on the next call)
// covers these calls too.
import Edge from "./index.js";

/** The request headers a tracking post needs, in `track_post`'s order, the cookie apart. */
const TRACK_HEADERS = ["origin", "sec-gpc", "authorization", "content-type", "x-retry-count", "user-agent", "cf-connecting-ip"];

// The `Cookie` header (2 KB on a typical site) crosses as UTF-8 bytes:
// `encode` is native, where wasm-bindgen copies a string a character at a time.
const utf8 = new TextEncoder();
const cookieOf = (request) => {
  const value = request.headers.get("cookie");
  return value === null ? undefined : utf8.encode(value);
};

// One entrypoint instance serves the synchronous calls of every request:
// they take `env` and `ctx` as arguments, and constructing one costs more
// than the loader's own work. The instance still recovers from a wasm trap.
// The `fetch` handler, which reads its `ctx` from the instance, gets its own.
let shared;
const sharedEdge = (ctx, env) => (shared ??= new Edge(ctx, env));

export default {
  async fetch(request, env, ctx) {
    const edge = sharedEdge(ctx, env);
    if (request.method === "GET" && request.url.includes("/loader.js")) {
      // The loader, when this isolate can render it at once; `undefined` otherwise.
      const loader = edge.loader_get(env, request, cookieOf(request), request.headers.get("sec-gpc") ?? undefined);
      if (loader === undefined) return new Edge(ctx, env).fetch(request);
      const [status, headers, body] = loader;
      return new Response(body.length ? body : null, { status, headers });
    }
    if (request.method !== "POST") return new Edge(ctx, env).fetch(request);
    const headers = TRACK_HEADERS.map((name) => request.headers.get(name) ?? undefined);
    // `undefined` when the body cannot be read: `track_post` answers that.
    const body = await request.arrayBuffer().then((b) => new Uint8Array(b), () => undefined);
    const cookie = cookieOf(request);
    let step = edge.track_post(env, ctx, request, cookie, ...headers, body, false);
    if (typeof step === "string") {
      // This isolate has no fresh destination list for the write key yet.
      await edge.track_load_list(env, ctx, step);
      step = edge.track_post(env, ctx, request, cookie, ...headers, body, true);
    }
    if (step === undefined) return new Edge(ctx, env).fetch(request);
    if (step instanceof Response) return step;
    // The deadline covers Segment's whole answer, body included.
    const signal = AbortSignal.timeout(step.timeout_ms());
    let answer;
    try {
      answer = await fetch(step.url(), { method: "POST", headers: unpack(step.headers()), body: step.body(), signal });
    } catch (error) {
      return edge.track_failed(step, error, signal.aborted);
    }
    const type = answer.headers.get("content-type") ?? undefined;
    const retryAfter = answer.headers.get("retry-after") ?? undefined;
    const reply = unpack(edge.track_answer(step, answer.status, type, retryAfter));
    return new Response(answer.body, { status: answer.status, headers: reply });
  },

  scheduled(event, env, ctx) {
    return new Edge(ctx, env).scheduled(event);
  },
};

/**
 * Headers from `name\nvalue\n…`, as wasm packs them, as an object: the
 * runtime makes a `Headers` from an object at about a third of what a list
 * of pairs costs it. Wasm packs each name once, and only names of its own
 * (never `__proto__`).
 */
function unpack(packed) {
  const parts = packed.split("\n");
  const headers = {};
  for (let i = 0; i + 1 < parts.length; i += 2) headers[parts[i]] = parts[i + 1];
  return headers;
}
