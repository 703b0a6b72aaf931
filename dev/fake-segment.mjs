// A stand-in for Segment's servers, and the only fake in the test setup: the
// CDN (the real @segment/analytics-next build from npm, source settings, the
// Projects API, device-mode destination code) and the tracking API, which
// records every post it receives. It is a real HTTP server on loopback, the
// Worker's outbound service, so resets and slow answers are real ones.

import { createServer } from "node:http";
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const fixtures = join(root, "tests", "fixtures");
const analyticsDist = join(root, "node_modules", "@segment", "analytics-next", "dist", "umd");

const TRACKING = new Set(["t", "p", "i", "g", "a", "s", "b", "m", "track", "page", "identify", "group", "alias", "screen", "batch"]);

/** Marks an answer that is a dropped connection instead. */
const RESET = Symbol("reset");

function json(body, status = 200, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** The code of a fake device-mode destination: records each call in the page. */
function destinationScript(plugin) {
  const name = JSON.stringify(plugin.creationName);
  return `window[${JSON.stringify(plugin.libraryName)}] = function (settings) {
  function record(ctx) {
    (window.__deviceMode = window.__deviceMode || []).push({ destination: ${name}, type: ctx.event.type, event: ctx.event.event || null, messageId: ctx.event.messageId });
    return ctx;
  }
  return [{ name: ${name}, type: "destination", version: "1.0.0",
    isLoaded: function () { return true; }, load: function () { return Promise.resolve(); },
    track: record, page: record, identify: record, group: record, alias: record, screen: record }];
};
(window.__deviceModeLoaded = window.__deviceModeLoaded || []).push(${name});
`;
}

/** Starts the fake on 127.0.0.1 (a free port unless given). */
export async function startFakeSegment(options = {}) {
  const fake = createFakeSegment(options);
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = chunks.length ? Buffer.concat(chunks) : undefined;
    const request = new Request(`http://${req.headers.host ?? "fake-segment"}${req.url}`, {
      method: req.method,
      headers: Object.entries(req.headers).filter(([, v]) => typeof v === "string"),
      body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
    });
    let response;
    try {
      response = await fake.handle(request);
    } catch (error) {
      response = new Response(String(error), { status: 500 });
    }
    if (response === RESET) {
      req.socket.destroy();
      return;
    }
    const bytes = Buffer.from(await response.arrayBuffer());
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (fake.state.slowBodyMs) {
      res.write(bytes.subarray(0, 1));
      await new Promise((r) => setTimeout(r, fake.state.slowBodyMs));
      res.end(bytes.subarray(1));
    } else {
      res.end(bytes);
    }
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    ...fake,
    address: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}

export function createFakeSegment(options = {}) {
  const settingsTemplate = options.settings ?? JSON.parse(readFileSync(join(fixtures, "settings.json"), "utf8"));
  const state = {
    projects: options.projects ?? JSON.parse(readFileSync(join(fixtures, "projects.json"), "utf8")),
    settings: settingsTemplate,
    /** Every request, in order: { method, host, path, search, headers }. */
    requests: [],
    /** Every tracking post: { path, headers, body (parsed), raw (as received), at }. */
    posts: [],
    /** Answers to force on tracking posts, consumed in order: { status, headers, body }. */
    apiFailures: [],
    /** Fails this share (0..1) of tracking posts with 500, at random. */
    apiFailureRate: 0,
    /** Fails every tracking post with 500 until this time (ms since epoch). */
    apiFailUntil: 0,
    /**
     * Answers to force on the Projects API / settings: { status, body, headers } or
     * "reset"; `document: "integrations"` or `"settings"` aims one at that document only.
     */
    cdnFailures: [],
    /** Milliseconds to wait before answering a tracking post. */
    apiDelayMs: 0,
    /** Milliseconds to wait before answering the Projects API or settings. */
    cdnDelayMs: 0,
    /** Milliseconds between the first byte of a body and the rest. */
    slowBodyMs: 0,
    /** Projects API / settings calls being answered now, and the most at once. */
    cdnInFlight: 0,
    cdnMaxInFlight: 0,
  };

  function settingsFor(writeKey) {
    const copy = structuredClone(state.settings);
    if (copy.integrations?.["Segment.io"]) copy.integrations["Segment.io"].apiKey = writeKey;
    return copy;
  }

  async function handle(request) {
    const url = new URL(request.url);
    const path = url.pathname;
    state.requests.push({ method: request.method, host: url.host, path, search: url.search, headers: Object.fromEntries(request.headers) });

    // Controls for the demo page and tests.
    if (path === "/__received") return json(state.posts);

    let m;
    if (request.method === "POST" && (m = path.match(/^\/v1\/([a-z]+)$/)) && TRACKING.has(m[1])) {
      const text = await request.text();
      if (state.apiDelayMs) await new Promise((r) => setTimeout(r, state.apiDelayMs));
      const failing = Date.now() < state.apiFailUntil || Math.random() < state.apiFailureRate;
      const forced = state.apiFailures.shift() ?? (failing ? { status: 500 } : null);
      if (forced) {
        if (forced.status === "reset") return RESET;
        return json(forced.body ?? { success: false }, forced.status, forced.headers);
      }
      let body;
      try {
        body = JSON.parse(text);
      } catch {
        return json({ success: false, message: "invalid JSON" }, 400);
      }
      state.posts.push({ path, headers: Object.fromEntries(request.headers), body, raw: text, at: Date.now() });
      return json({ success: true });
    }

    if (request.method !== "GET") return new Response("method not allowed", { status: 405 });

    if ((m = path.match(/^\/v1\/projects\/([^/]+)\/(integrations|settings)$/))) {
      state.cdnMaxInFlight = Math.max(state.cdnMaxInFlight, ++state.cdnInFlight);
      try {
        if (state.cdnDelayMs) await new Promise((r) => setTimeout(r, state.cdnDelayMs));
      } finally {
        state.cdnInFlight--;
      }
      const at = state.cdnFailures.findIndex((f) => !f?.document || f.document === m[2]);
      const forced = at < 0 ? undefined : state.cdnFailures.splice(at, 1)[0];
      if (forced === "reset" || forced?.status === "reset") return RESET;
      if (forced) return new Response(forced.body ?? "", { status: forced.status, headers: forced.headers });
      const headers = { "cache-control": "public, max-age=60" };
      return m[2] === "integrations" ? json(state.projects, 200, headers) : json(settingsFor(m[1]), 200, headers);
    }
    if ((m = path.match(/^\/analytics\.js\/v1\/([^/]+)\/analytics\.min\.js$/))) {
      return new Response(readFileSync(join(analyticsDist, "standalone.js")), {
        headers: { "content-type": "text/javascript", "cache-control": "public, max-age=300" },
      });
    }
    if ((m = path.match(/^\/analytics-next\/bundles\/([A-Za-z0-9._-]+)$/))) {
      const file = join(analyticsDist, m[1]);
      if (!existsSync(file)) return new Response("not found", { status: 404 });
      return new Response(readFileSync(file), {
        headers: { "content-type": "text/javascript", "cache-control": "public, max-age=31536000, immutable" },
      });
    }
    if (path.startsWith("/next-integrations/")) {
      const plugin = (state.settings.remotePlugins ?? []).find((p) => new URL(p.url).pathname === path);
      if (!plugin) return new Response("not found", { status: 404 });
      return new Response(destinationScript(plugin), {
        headers: { "content-type": "text/javascript", "cache-control": "public, max-age=3600" },
      });
    }
    return new Response("not found", { status: 404 });
  }

  return {
    handle,
    state,
    /** Tracking posts as single events (a batch counts as its events). */
    events() {
      return state.posts.flatMap((p) => (Array.isArray(p.body.batch) ? p.body.batch : p.path === "/v1/m" ? [] : [p.body]));
    },
    reset() {
      state.requests.length = 0;
      state.posts.length = 0;
      state.apiFailures.length = 0;
      state.cdnFailures.length = 0;
      state.apiFailureRate = 0;
      state.apiFailUntil = 0;
      state.apiDelayMs = 0;
      state.cdnDelayMs = 0;
      state.slowBodyMs = 0;
      state.cdnMaxInFlight = 0;
    },
  };
}
