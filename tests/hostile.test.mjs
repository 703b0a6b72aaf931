// Hostile requests against the built Worker (wasm) in workerd via Miniflare:
// each gets a clear 4xx (or the documented default behaviour), never a 500,
// and nothing reaches the fake Segment that should not. Where workerd itself
// refuses a request before the Worker runs, the test says so.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { WK, OTHER_WK, AUTH, optanon, ANALYTICS_ONLY, EVERYTHING, request, getJson, loaderData, loaderBlock, track, post, sharedStack, upstreamPosts } from "./support/helpers.mjs";

const VARS = { WRITE_KEYS: `${WK},${OTHER_WK}` };
const REFUSED = ["Facebook Pixel", "Google Ads Conversions", "Intercom Web (Actions)", "Twitter Ads"];
const BUNDLE = "/analytics-next/bundles/ajs-destination.bundle.40628baed746e9904edc.js";

/** Write keys that are not configured, each distinctive enough to find in the fake's log. */
const STRANGER = "stranger_key_4711";
const ODD_KEYS = [
  STRANGER,
  "",
  " ",
  `${WK} `,
  ` ${WK}`,
  `${WK}\t`,
  WK.toUpperCase(),
  `${WK}%00`,
  `${WK}\u0000`,
  `../${WK}`,
  `${WK}/`,
  `${WK};`,
  `${WK},${OTHER_WK}`,
  "*",
  "%",
  "<script>alert(1)</script>",
  "wk_t\u0435st_1234567890", // a Cyrillic "е"
  `${WK}\u00e9`,
  "k".repeat(10_000),
];

const basic = (user) => "Basic " + Buffer.from(user + ":").toString("base64");


/**
 * One HTTP/1.1 request written byte for byte on a socket, for what fetch()
 * refuses to send (NUL, raw UTF-8, dot segments, odd Host headers).
 */
async function raw(stack, { method = "GET", path, headers = {}, body = "" }) {
  const { hostname, port } = new URL(stack.url);
  const lines = [`${method} ${path} HTTP/1.1`];
  if (!Object.keys(headers).some((h) => h.toLowerCase() === "host")) lines.push(`Host: ${hostname}:${port}`);
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  const payload = Buffer.isBuffer(body) ? body : Buffer.from(body, "latin1");
  if (method !== "GET" && method !== "HEAD") lines.push(`Content-Length: ${payload.length}`);
  lines.push("Connection: close", "", "");
  const bytes = Buffer.concat([Buffer.from(lines.join("\r\n"), "latin1"), payload]);
  const answer = await new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => socket.end(bytes));
    const chunks = [];
    socket.on("data", (c) => chunks.push(c));
    socket.on("close", () => resolve(Buffer.concat(chunks)));
    socket.on("error", reject);
    socket.setTimeout(15_000, () => socket.destroy(new Error("no answer")));
  });
  const split = answer.indexOf("\r\n\r\n");
  const head = answer.subarray(0, split).toString("latin1").split("\r\n");
  const status = Number(head[0].split(" ")[1]);
  const resHeaders = Object.fromEntries(head.slice(1).map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
  let rest = answer.subarray(split + 4);
  if (/chunked/i.test(resHeaders["transfer-encoding"] ?? "")) {
    const parts = [];
    for (;;) {
      const eol = rest.indexOf("\r\n");
      const size = parseInt(rest.subarray(0, eol).toString(), 16);
      if (!size) break;
      parts.push(rest.subarray(eol + 2, eol + 2 + size));
      rest = rest.subarray(eol + 4 + size);
    }
    rest = Buffer.concat(parts);
  }
  return { status, headers: resHeaders, body: rest.toString("utf8") };
}

/** Asserts a JSON error reply: the status, and a message. */
async function assertError(res, status, label) {
  assert.equal(res.status, status, label);
  const body = await res.json();
  assert.equal(body.status, status, label);
  assert.ok(typeof body.error === "string" && body.error.length > 5, label);
  assert.equal(res.headers.get("cache-control"), "no-store", label);
}

describe("hostile requests", () => {
  const stack = sharedStack(VARS);

  describe("cookies", () => {
    test("workerd refuses a Cookie header over ~128 KiB with 431 and a NUL byte with 400, before the Worker runs", async () => {
      const huge = "pad=" + "x".repeat(200 * 1024) + "; " + EVERYTHING;
      assert.equal((await request(stack, "/edge/consent", { headers: { cookie: huge } })).status, 431);
      const hugePost = await raw(stack, { method: "POST", path: "/edge/api/v1/t", headers: { Cookie: huge, Authorization: AUTH }, body: JSON.stringify(track()) });
      assert.equal(hugePost.status, 431);
      // fetch() itself will not send a NUL; on the wire workerd's HTTP parser refuses it.
      const nul = await raw(stack, { path: "/edge/consent", headers: { Cookie: `a=x\u0000y; ${EVERYTHING}` } });
      assert.equal(nul.status, 400);
      const nulPost = await raw(stack, { method: "POST", path: "/edge/api/v1/t", headers: { Cookie: `a=\u0000; ${EVERYTHING}`, Authorization: AUTH }, body: JSON.stringify(track()) });
      assert.equal(nulPost.status, 400);
      assert.deepEqual(stack.segment.state.requests, [], "nothing reached upstream");
    });

    test("enormous cookies the runtime accepts (30-120 KB) resolve normally, and no cookie goes upstream", async () => {
      for (const kb of [30, 64, 120]) {
        const cookie = `_big=${"x".repeat(kb * 1024)}; ${ANALYTICS_ONLY}`;
        const { res, body } = await getJson(stack, "/edge/consent", { headers: { cookie } });
        assert.equal(res.status, 200, `${kb} KB`);
        assert.equal(body.source, "cookie");
        assert.equal(body.groups.C0002, true);
        assert.equal(body.groups.C0004, false);
        const loader = await request(stack, "/edge/loader.js", { headers: { cookie } });
        assert.equal(loader.status, 200);
        assert.equal(loaderData(await loader.text()).consent.integrations["Facebook Pixel"], false);
        const sent = await post(stack, "/edge/api/v1/t", track(), { cookie });
        assert.equal(sent.status, 200);
        assert.equal(sent.headers.get("x-consent-forwarded"), "1");
      }
      assert.equal(stack.segment.state.posts.length, 3);
      for (const p of stack.segment.state.posts) {
        assert.equal(p.headers.cookie, undefined, "cookies are never forwarded");
        assert.ok(!p.raw.includes("xxxxxxxx"), "nothing of the cookie in the event");
      }
    });

    test("thousands of cookies, and hundreds of OptanonConsent copies: the most restrictive copy wins", async () => {
      const many = Array.from({ length: 5000 }, (_, i) => `c${i}=v${i}`).join("; ") + "; " + ANALYTICS_ONLY;
      let { res, body } = await getJson(stack, "/edge/consent", { headers: { cookie: many } });
      assert.equal(res.status, 200);
      assert.equal(body.source, "cookie");
      assert.deepEqual(body.groups, { C0001: true, C0002: true, C0003: false, C0004: false, C0005: false });
      // 300 copies that grant everything, one in the middle that refuses C0002.
      const copies = Array.from({ length: 300 }, (_, i) => (i === 150 ? optanon("C0001:1,C0002:0,C0003:1,C0004:1,C0005:1") : EVERYTHING)).join("; ");
      ({ res, body } = await getJson(stack, "/edge/consent", { headers: { cookie: copies } }));
      assert.equal(res.status, 200);
      assert.equal(body.groups.C0002, false);
      assert.equal(body.groups.C0004, true);
      assert.equal(body.destinations["Google Analytics 4 Web"].enabled, false);
      const sent = await post(stack, "/edge/api/v1/t", track(), { cookie: copies });
      assert.equal(sent.status, 200);
      assert.equal(stack.segment.events()[0].integrations["Google Analytics 4 Web"], false);
    });

    test("quotes, <script>, U+2028 and raw UTF-8 in cookies are data: JSON stays JSON, the loader stays one script", async () => {
      // fetch() sends header values as bytes (latin1 code units): this is UTF-8 on the wire.
      const utf8 = (s) => Buffer.from(s, "utf8").toString("latin1");
      const cookies = [
        `OptanonConsent="groups=C0001:1,C0002:1,</script><script>alert(1)</script>:1"`,
        `OptanonConsent=groups=C0001%3A1%2CC0002%3A1%2C%22%3E%3Cscript%3E%3A1; x="<script>"`,
        utf8(`OptanonConsent=groups=C0001%3A1%2CC0002%3A1%2C\u2028x\u2029%3A1; y=\u2028`),
        `OptanonConsent=groups=C0001%3A1%2CC0002%3A1%2C%E2%80%A8%3A1%2C%27%3A1`,
        utf8(`OptanonConsent=groups=C0001:1,C0002:1,\u00e9t\u00e9:1,\ud83c\udf6a:1`),
        `OptanonConsent=""; OptanonConsent="; ${ANALYTICS_ONLY}`,
        `OptanonConsent=groups=C0001%3A1%2CC0002%3A1%2C%ff%fe%3A1`,
      ];
      for (const cookie of cookies) {
        const consent = await request(stack, "/edge/consent", { headers: { cookie } });
        assert.equal(consent.status, 200, cookie);
        const body = JSON.parse(await consent.text());
        assert.equal(body.groups.C0002, true, cookie);
        assert.equal(body.groups.C0004, false, cookie);
        const loader = await request(stack, "/edge/loader.js", { headers: { cookie } });
        assert.equal(loader.status, 200, cookie);
        const js = await loader.text();
        const block = loaderBlock(js);
        for (const bad of ["<", ">", "'", "\u2028", "\u2029"]) assert.ok(!block.includes(bad), `${JSON.stringify(bad)} escaped for ${cookie}`);
        assert.ok(!js.toLowerCase().includes("</script"), cookie);
        new Function(js); // still exactly one valid script
        assert.equal(JSON.parse(block).consent.integrations["Facebook Pixel"], false, cookie);
        const sent = await post(stack, "/edge/api/v1/t", track(), { cookie });
        assert.equal(sent.status, 200, cookie);
      }
      assert.equal(stack.segment.state.posts.length, cookies.length, "each forwarded event parsed as JSON upstream");
      for (const { body } of stack.segment.state.posts) {
        assert.equal(body.context.consent.categoryPreferences.C0004, false);
        assert.equal(body.integrations["Google Analytics 4 Web"], true);
      }
    });

    test("a cookie naming thousands of groups costs time linear in its size", async () => {
      // ~95 KB, under workerd's header limit: 16 000 distinct group ids, all
      // granted. Each answer states every one of them (loader, /consent, the
      // stamped event), so work per group is expected; work per pair of groups
      // is not: linear work is a few ms here, pairwise work ~1 s.
      const cookie = "OptanonConsent=groups=" + Array.from({ length: 16_000 }, (_, i) => `${i.toString(36)}:1`).join(",");
      const timed = async (send) => {
        const started = performance.now();
        const res = await send();
        await res.arrayBuffer();
        assert.equal(res.status, 200);
        return Math.round(performance.now() - started);
      };
      const timings = {
        consent: await timed(() => request(stack, "/edge/consent", { headers: { cookie } })),
        loader: await timed(() => request(stack, "/edge/loader.js", { headers: { cookie } })),
        event: await timed(() => post(stack, "/edge/api/v1/t", track(), { cookie })),
      };
      console.log("16 000-group cookie, ms per request:", JSON.stringify(timings));
      for (const [route, ms] of Object.entries(timings)) assert.ok(ms < 250, `${route}: ${ms} ms for one request (work per pair of groups?)`);
    });
  });

  describe("event bodies", () => {
    test("nesting 10 000 levels deep is a 400 (or 413 once over the size limit), nothing forwarded", async () => {
      const arrays = `{"type":"track","event":"deep","writeKey":"${WK}","properties":{"a":${"[".repeat(10_000)}${"]".repeat(10_000)}}}`;
      await assertError(await post(stack, "/edge/api/v1/t", arrays), 400, "arrays in /t");
      const objects = `{"type":"track","event":"deep","properties":${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}}`;
      await assertError(await post(stack, "/edge/api/v1/t", `{"writeKey":"${WK}",` + objects.slice(1)), 413, "objects in /t: over 32 KiB");
      await assertError(await post(stack, "/edge/api/v1/b", `{"writeKey":"${WK}","batch":[${objects}]}`), 400, "objects in a batch");
      await assertError(await post(stack, "/edge/api/v1/b", `{"writeKey":"${WK}","batch":${"[".repeat(10_000)}${"]".repeat(10_000)}}`), 400, "the batch itself");
      await assertError(await post(stack, "/edge/api/v1/t", `{"writeKey":"${WK}","context":{"consent":{"categoryPreferences":${'{"a":'.repeat(5000)}1${"}".repeat(5000)}}}}`), 400, "under context.consent");
      await assertError(await post(stack, "/edge/api/v1/m", `{"series":${"[".repeat(10_000)}${"]".repeat(10_000)}}`), 400, "metrics");
      assert.deepEqual(upstreamPosts(stack), []);
      // Just under the limit is an ordinary event.
      const fine = `{"type":"track","event":"fine","writeKey":"${WK}","properties":${'{"a":'.repeat(100)}1${"}".repeat(100)}}`;
      assert.equal((await post(stack, "/edge/api/v1/t", fine)).status, 200);
      assert.equal(stack.segment.events()[0].event, "fine");
    });

    test("duplicate keys: the forwarded event carries one corrected object, read as JSON.parse reads it", async () => {
      const count = (text, key) => text.split(`"${key}":`).length - 1;
      // Two integrations objects, the second granting everything.
      const twice = `{"type":"track","event":"Dup","messageId":"dup-1","writeKey":"${WK}","integrations":{"Facebook Pixel":false},"properties":{"n":1},"integrations":{"All":true,"Facebook Pixel":true,"Twitter Ads":true,"Google Ads Conversions":{"id":1},"Google Analytics 4 Web":true}}`;
      assert.equal((await post(stack, "/edge/api/v1/t", twice, { cookie: ANALYTICS_ONLY })).status, 200);
      let [{ raw: sentText, body: sent }] = stack.segment.state.posts;
      assert.equal(count(sentText, "integrations"), 1, sentText);
      for (const d of REFUSED) assert.equal(sent.integrations[d], false, d);
      assert.equal(sent.integrations.All, false);
      assert.equal(sent.integrations["Google Analytics 4 Web"], true);
      assert.deepEqual(sent.properties, { n: 1 });

      // Two context objects, the second claiming C0004.
      stack.segment.reset();
      const contexts = `{"type":"track","event":"Dup","writeKey":"${WK}","context":{"page":{"path":"/a"}},"context":{"consent":{"categoryPreferences":{"C0004":true},"onetrust":"C0004:1"},"page":{"path":"/b"}}}`;
      assert.equal((await post(stack, "/edge/api/v1/t", contexts, { cookie: ANALYTICS_ONLY })).status, 200);
      [{ raw: sentText, body: sent }] = stack.segment.state.posts;
      assert.equal(count(sentText, "context"), 1, sentText);
      assert.equal(sent.context.consent.categoryPreferences.C0004, false);
      assert.match(sent.context.consent.onetrust, /C0004:0/);
      assert.equal(sent.context.page.path, "/b");

      // Duplicate consent inside one context: the granting copy is corrected too.
      stack.segment.reset();
      const prefs = `{"type":"track","event":"Dup","writeKey":"${WK}","context":{"consent":{"categoryPreferences":{"C0004":false}},"consent":{"categoryPreferences":{"C0004":true,"C0005":true}}}}`;
      assert.equal((await post(stack, "/edge/api/v1/t", prefs, { cookie: ANALYTICS_ONLY })).status, 200);
      [{ raw: sentText, body: sent }] = stack.segment.state.posts;
      assert.equal(count(sentText, "consent"), 1, sentText);
      assert.equal(sent.context.consent.categoryPreferences.C0004, false);
      assert.equal(sent.context.consent.categoryPreferences.C0005, false);

      // Two batches: the last one is what JSON.parse (and Segment) would read; one goes up.
      stack.segment.reset();
      const batches = `{"writeKey":"${WK}","batch":[{"type":"track","event":"First","messageId":"b1"}],"batch":[{"type":"track","event":"Second","messageId":"b2","integrations":{"Facebook Pixel":true}}]}`;
      const res = await post(stack, "/edge/api/v1/b", batches, { cookie: ANALYTICS_ONLY });
      assert.equal(res.status, 200);
      [{ raw: sentText, body: sent }] = stack.segment.state.posts;
      assert.equal(count(sentText, "batch"), 1, sentText);
      assert.deepEqual(sent.batch.map((e) => e.messageId), ["b2"]);
      assert.equal(sent.batch[0].integrations["Facebook Pixel"], false);

      // Two write keys: the key the event ends up with must be a configured one.
      stack.segment.reset();
      const strangerLast = `{"type":"track","event":"Dup","writeKey":"${WK}","writeKey":"${STRANGER}"}`;
      await assertError(await post(stack, "/edge/api/v1/t", strangerLast, { authorization: "" }), 403, "unknown key last");
      await assertError(await post(stack, "/edge/api/v1/t", strangerLast), 403, "unknown key last, with Basic auth");
      const strangerFirst = `{"type":"track","event":"Dup","writeKey":"${STRANGER}","writeKey":"${WK}"}`;
      assert.equal((await post(stack, "/edge/api/v1/t", strangerFirst)).status, 200);
      [{ raw: sentText }] = stack.segment.state.posts;
      assert.equal(count(sentText, "writeKey"), 1, sentText);
      assert.ok(!sentText.includes(STRANGER), "the unknown key is not forwarded");
    });

    test("`batch` that is not an array of objects is a 400, nothing forwarded", async () => {
      for (const body of [`{"writeKey":"${WK}","batch":{}}`, `{"writeKey":"${WK}","batch":null}`, `{"writeKey":"${WK}","batch":"[]"}`, `{"writeKey":"${WK}","batch":1}`, `{"writeKey":"${WK}"}`, `{"writeKey":"${WK}","batch":[1,"x",null]}`, `{"writeKey":"${WK}","batch":[[]]}`, "[]", '"batch"']) {
        await assertError(await post(stack, "/edge/api/v1/b", body), 400, body);
        await assertError(await post(stack, "/edge/api/v1/batch", body), 400, body);
      }
      assert.deepEqual(upstreamPosts(stack), []);
    });

    test("a batch of 10 000 tiny events under 500 KiB goes upstream as one batch", async () => {
      const events = Array.from({ length: 10_000 }, (_, i) => ({ type: "track", event: "e", messageId: `m${i}` }));
      const body = JSON.stringify({ writeKey: WK, batch: events });
      assert.ok(body.length < 500 * 1024, `${body.length} bytes`);
      const res = await post(stack, "/edge/api/v1/b", body, { cookie: ANALYTICS_ONLY });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-consent-forwarded"), "10000");
      assert.equal(res.headers.get("x-consent-dropped"), "0");
      assert.equal(upstreamPosts(stack).length, 1);
      const [{ body: sent, path }] = stack.segment.state.posts;
      assert.equal(path, "/v1/b");
      assert.equal(sent.batch.length, 10_000);
      assert.ok(sent.batch.every((e, i) => e.messageId === `m${i}`), "in order");
      assert.ok(sent.batch.every((e) => e.integrations["Facebook Pixel"] === false && e.context.consent.categoryPreferences.C0002 === true));
    });

    test("content types: text/plain, application/json and none work; a form body is invalid JSON", async () => {
      const body = () => JSON.stringify(track());
      const cases = [
        ["text/plain", "text/plain"],
        ["text/plain;charset=UTF-8", "text/plain;charset=UTF-8"],
        ["application/json", "application/json"],
        [undefined, "text/plain"],
      ];
      for (const [contentType, forwarded] of cases) {
        const headers = { authorization: AUTH, ...(contentType ? { "content-type": contentType } : {}) };
        // A byte body: fetch() adds no content type of its own.
        const res = await request(stack, "/edge/api/v1/t", { method: "POST", headers, body: new TextEncoder().encode(body()) });
        assert.equal(res.status, 200, String(contentType));
        assert.equal(stack.segment.state.posts.at(-1).headers["content-type"], forwarded, String(contentType));
      }
      assert.equal(stack.segment.state.posts.length, cases.length);
      stack.segment.reset();
      const form = new URLSearchParams({ type: "track", event: "x", writeKey: WK }).toString();
      await assertError(await request(stack, "/edge/api/v1/t", { method: "POST", headers: { authorization: AUTH, "content-type": "application/x-www-form-urlencoded" }, body: form }), 400, "form");
      const multipart = new FormData();
      multipart.set("writeKey", WK);
      await assertError(await request(stack, "/edge/api/v1/t", { method: "POST", headers: { authorization: AUTH }, body: multipart }), 400, "multipart");
      await assertError(await request(stack, "/edge/api/v1/t", { method: "POST", headers: { authorization: AUTH, "content-type": "text/plain" }, body: new Uint8Array([0xff, 0xfe, 0x7b, 0x7d]) }), 400, "not UTF-8");
      assert.deepEqual(upstreamPosts(stack), []);
    });

    test("no body or an empty body is a 400 on every event route", async () => {
      for (const path of ["t", "p", "i", "g", "a", "s", "b", "m", "track", "batch"]) {
        await assertError(await request(stack, `/edge/api/v1/${path}`, { method: "POST", headers: { authorization: AUTH } }), 400, `${path}, absent`);
        await assertError(await request(stack, `/edge/api/v1/${path}`, { method: "POST", headers: { authorization: AUTH, "content-type": "text/plain" }, body: "" }), 400, `${path}, empty`);
        await assertError(await request(stack, `/edge/api/v1/${path}`, { method: "POST", headers: { authorization: AUTH }, body: "   " }), 400, `${path}, blank`);
      }
      assert.deepEqual(upstreamPosts(stack), []);
    });
  });

  describe("paths and write keys", () => {
    test("path traversal in CDN paths is a 404 and nothing is fetched", async () => {
      const paths = [
        "/edge/cdn/next-integrations/../v1/projects/stranger/settings",
        "/edge/cdn/analytics-next/bundles/../../analytics.js/v1/stranger/analytics.min.js",
        "/edge/cdn/next-integrations/%2e%2e/%2e%2e/v1/projects/stranger/settings",
        "/edge/cdn/next-integrations/%2E%2E/x.js",
        "/edge/cdn/next-integrations/.%2e/x.js",
        "/edge/cdn/next-integrations/%252e%252e/x.js",
        "/edge/cdn/next-integrations/a%2fb.js",
        "/edge/cdn/next-integrations/a%2Fb.js",
        "/edge/cdn/next-integrations/a%5cb.js",
        "/edge/cdn/next-integrations/..\\..\\x.js",
        "/edge/cdn/analytics-next/bundles/..%2f..%2fsecret",
        "/edge/cdn//analytics-next/bundles/x.js",
        "/edge/cdn/analytics-next//bundles/x.js",
        "/edge/cdn/next-integrations//evil.example/x.js",
        "/edge/cdn/next-integrations/x.js%00",
        "/edge/cdn/next-integrations/x;.js",
        "/edge/cdn/next-integrations/x%20.js",
        "/edge/cdn/analytics-next/bundles/",
        "/edge/cdn/analytics-next/bundles/a/b.js",
        "/edge/cdn",
        "/edge/cdn/",
        "/edge/cdn/v1/projects/" + WK + "/integrations",
        "/edge/cdn/v1/projects/" + WK + "/settings/../integrations",
        "/edge/cdn/v1/projects/" + WK + "/settings%2f..%2fintegrations",
        "/edge/cdn/http://evil.example/x.js",
        "/edge/cdn/@evil.example/x.js",
      ];
      for (const path of paths) {
        // On the wire, exactly as written: fetch() would resolve the dot segments first.
        // (workerd's URL parser resolves literal `..` itself; what it leaves under
        // /edge/cdn must still be one of the four shapes, or a 404.)
        const res = await raw(stack, { path });
        assert.ok(res.status === 404 || res.status === 400, `${path}: ${res.status}`);
        if (res.status === 404) assert.match(res.body, /^\{"error":"not found","status":404\}$/, `${path}: ${res.body}`);
      }
      assert.deepEqual(stack.segment.state.requests, [], "no upstream call");
      // A literal backslash is a slash and a literal `.` segment is dropped by the
      // URL parser, before the Worker runs: what is fetched stays inside the tree.
      for (const path of ["/edge/cdn/next-integrations/a\\b.js", "/edge/cdn/next-integrations/./a/b.js"]) {
        const res = await raw(stack, { path });
        assert.equal(res.status, 404, "the fake CDN has no such file");
      }
      assert.deepEqual(stack.segment.state.requests.map((r) => r.path), ["/next-integrations/a/b.js", "/next-integrations/a/b.js"]);
    });

    test("odd write keys are refused on every route, and nothing is forwarded", async () => {
      for (const key of ODD_KEYS) {
        const q = encodeURIComponent(key);
        const loader = await request(stack, `/edge/loader.js?wk=${q}`);
        assert.equal(loader.status, 404, `loader ${JSON.stringify(key)}`);
        assert.match(loader.headers.get("content-type"), /javascript/);
        const text = await loader.text();
        assert.match(text, /^\/\* consent-edge: [^*]* \*\/\n$/, "a bare JS comment");
        if (key.length > 2) assert.ok(!text.includes(key), "the key is not echoed");
        assert.equal((await request(stack, `/edge/consent?wk=${q}`)).status, 404, `consent ${JSON.stringify(key)}`);
        for (const path of [`/edge/cdn/analytics.js/v1/${q}/analytics.min.js`, `/edge/cdn/v1/projects/${q}/settings`]) {
          const res = await request(stack, path);
          assert.equal(res.status, 404, path.slice(0, 80));
        }
        const label = JSON.stringify(key).slice(0, 40);
        await assertError(await post(stack, "/edge/api/v1/t", track({ writeKey: key }), { authorization: "" }), 403, `body ${label}`);
        await assertError(await post(stack, "/edge/api/v1/b", { writeKey: key, batch: [track({ writeKey: undefined })] }, { authorization: "" }), 403, `batch ${label}`);
        await assertError(await post(stack, "/edge/api/v1/b", { batch: [track({ writeKey: WK }), track({ writeKey: key })] }, { authorization: "" }), 403, `one event's key ${label}`);
        const { writeKey, ...keyless } = track();
        await assertError(await post(stack, "/edge/api/v1/t", keyless, { authorization: basic(key) }), 403, `basic ${label}`);
        await assertError(await post(stack, "/edge/api/v1/t", track({ writeKey: key })), 403, `body disagrees with basic ${label}`);
      }
      // Authorization headers that are not Basic with a configured key.
      const { writeKey, ...keyless } = track();
      for (const authorization of ["", "Basic", "Basic ", "Basic !!!", "Basic " + "A".repeat(9000), `Bearer ${WK}`, `${WK}`, "Basic " + Buffer.from(":" + WK).toString("base64"), "Basic " + Buffer.from(OTHER_WK + WK + ":").toString("base64")]) {
        await assertError(await post(stack, "/edge/api/v1/t", keyless, { authorization }), 403, `authorization ${authorization.slice(0, 30)}`);
      }
      await assertError(await post(stack, "/edge/api/v1/t", { ...keyless, writeKey: 42 }, { authorization: "" }), 403, "a key that is not a string");
      await assertError(await post(stack, "/edge/api/v1/t", { ...keyless, writeKey: null }, { authorization: "" }), 403, "null key");
      assert.deepEqual(stack.segment.state.requests, [], "nothing reached upstream");
    });

    test("Host and X-Forwarded-* spoofing: URLs follow the request URL's own host, X-Forwarded-* is ignored", async () => {
      const spoof = { host: "evil.example", "x-forwarded-host": "evil.example", "x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.9", forwarded: "host=evil.example;proto=https" };
      // The request URL is https://a.example/...; its headers say otherwise.
      const settings = await (await stack.mf.dispatchFetch(`http://a.example/edge/cdn/v1/projects/${WK}/settings`, { headers: spoof })).json();
      assert.equal(settings.integrations["Segment.io"].apiHost, "a.example/edge/api/v1");
      assert.equal(settings.integrations["Segment.io"].protocol, "http");
      const loader = loaderData(await (await stack.mf.dispatchFetch("http://a.example/edge/loader.js", { headers: spoof })).text());
      assert.equal(loader.cdn, "http://a.example/edge/cdn");
      assert.equal(loader.apiHost, "a.example/edge/api/v1");
      assert.equal(loader.protocol, "http");
      // On the wire the Host header is the URL's host (as on Cloudflare, where only
      // the zone's own hostnames are routed to the Worker); X-Forwarded-* still counts for nothing.
      const wire = await raw(stack, { path: `/edge/cdn/v1/projects/${WK}/settings`, headers: { Host: "b.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https" } });
      assert.equal(wire.status, 200);
      assert.equal(JSON.parse(wire.body).integrations["Segment.io"].apiHost, "b.example/edge/api/v1");
      assert.equal(JSON.parse(wire.body).integrations["Segment.io"].protocol, "http");
      const wireLoader = await raw(stack, { path: "/edge/loader.js", headers: { Host: "b.example:8443", "X-Forwarded-Host": "evil.example" } });
      assert.equal(loaderData(wireLoader.body).cdn, "http://b.example:8443/edge/cdn");
      // An Origin matching only the forwarded host is a foreign origin.
      const cors = await stack.mf.dispatchFetch("http://a.example/edge/api/v1/t", { method: "POST", headers: { ...spoof, origin: "https://evil.example", authorization: AUTH, "content-type": "text/plain" }, body: JSON.stringify(track()) });
      assert.equal(cors.status, 403);
      assert.equal(cors.headers.get("access-control-allow-origin"), null);
      assert.deepEqual(upstreamPosts(stack), []);
    });

    test("a Host header that is not a hostname never reaches the Worker", async () => {
      // workerd cannot build a request URL from these and fails the request itself
      // (locally a bare 500 from the runtime, before any Worker code runs); Cloudflare's
      // front end does not route such a Host to a Worker at all.
      for (const host of ['evil"</script>', "a b", "x.example/edge", "user@x.example"]) {
        const res = await raw(stack, { path: "/edge/loader.js", headers: { Host: host } });
        assert.ok(res.status >= 400, `${host}: ${res.status}`);
        assert.ok(!res.body.includes("consent-edge loader"), "no loader was rendered");
        assert.ok(!res.body.includes(host), "the host is not echoed");
      }
      assert.deepEqual(stack.segment.state.requests, []);
    });

    test("CORS from a foreign origin: preflight and POST are 403 without CORS headers, nothing forwarded", async () => {
      const own = new URL(stack.url);
      const foreign = [
        "https://evil.example",
        "null",
        `https://${own.host}`,
        `http://${own.hostname}:1`,
        `http://${own.hostname}`,
        `http://localhost:${own.port}`,
        `${own.origin}.evil.example`,
        `http://evil.example#${own.origin}`,
        `http://evil.example/${own.host}`,
        `${own.origin}@evil.example`,
        "*",
      ];
      for (const origin of foreign) {
        const preflight = await request(stack, "/edge/api/v1/t", { method: "OPTIONS", headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" } });
        assert.equal(preflight.status, 403, `preflight from ${origin}`);
        for (const path of ["t", "b", "m"]) {
          const body = path === "b" ? { writeKey: WK, batch: [track()] } : path === "m" ? { series: [] } : track();
          const res = await post(stack, `/edge/api/v1/${path}`, body, { origin, cookie: EVERYTHING });
          assert.equal(res.status, 403, `POST /${path} from ${origin}`);
          for (const r of [preflight, res]) {
            for (const h of ["access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-headers", "access-control-allow-methods", "access-control-expose-headers"]) {
              assert.equal(r.headers.get(h), null, `${h} for ${origin}`);
            }
          }
        }
      }
      assert.deepEqual(stack.segment.state.requests, [], "nothing forwarded");
    });
  });

  describe("open relay and cache poisoning", () => {
    /** Every place an upstream request could carry a write key. */
    function keysSentUpstream(stack) {
      const found = [];
      for (const r of stack.segment.state.requests) {
        found.push(decodeURIComponent(r.path + (r.search ?? "")));
        const auth = r.headers.authorization;
        if (auth) found.push(auth, Buffer.from(auth.replace(/^basic\s+/i, ""), "base64").toString("utf8"));
      }
      for (const p of stack.segment.state.posts) if (p.path !== "/v1/m") found.push(p.raw);
      return found.join("\n");
    }

    test("unknown write keys are never forwarded on any event, CDN, loader or consent route", async () => {
      const { writeKey, ...keyless } = track();
      for (const path of ["t", "p", "i", "g", "a", "s", "track", "page", "identify", "group", "alias", "screen"]) {
        assert.equal((await post(stack, `/edge/api/v1/${path}`, track({ writeKey: STRANGER }), { authorization: "" })).status, 403);
        assert.equal((await post(stack, `/edge/api/v1/${path}`, keyless, { authorization: basic(STRANGER) })).status, 403);
      }
      for (const path of ["b", "batch"]) {
        assert.equal((await post(stack, `/edge/api/v1/${path}`, { writeKey: STRANGER, batch: [keyless] }, { authorization: "" })).status, 403);
        assert.equal((await post(stack, `/edge/api/v1/${path}`, { batch: [keyless] }, { authorization: basic(STRANGER) })).status, 403);
      }
      assert.equal((await request(stack, `/edge/cdn/analytics.js/v1/${STRANGER}/analytics.min.js`)).status, 404);
      assert.equal((await request(stack, `/edge/cdn/v1/projects/${STRANGER}/settings`)).status, 404);
      assert.equal((await request(stack, `/edge/loader.js?wk=${STRANGER}`)).status, 404);
      assert.equal((await request(stack, `/edge/consent?wk=${STRANGER}`)).status, 404);
      // Known keys still work alongside, so the log is not trivially empty.
      assert.equal((await post(stack, "/edge/api/v1/t", track())).status, 200);
      assert.ok(!keysSentUpstream(stack).includes(STRANGER), "an unknown key reached upstream");
      // Nothing about the unknown key was stored or fetched either.
      const kv = await stack.kv();
      assert.equal(await kv.get(`v1:destinations:${STRANGER}`), null);
    });

    test("/m does not relay an unknown write key's Authorization upstream", async () => {
      // /m carries no write key of its own (its body is forwarded as is, by design);
      // whatever Authorization comes with it must not carry a key this Worker does not serve.
      const metrics = { series: [{ type: "Counter", metric: "analytics_js.invoke", value: 1, tags: {} }] };
      const res = await post(stack, "/edge/api/v1/m", metrics, { authorization: basic(STRANGER) });
      assert.ok(res.status === 200 || res.status === 403, String(res.status));
      const forwarded = stack.segment.state.requests.filter((r) => r.path === "/v1/m");
      for (const r of forwarded) assert.notEqual(r.headers.authorization, basic(STRANGER), "the unknown key's Authorization was forwarded to Segment");
    });

    test("the loader, /consent and every per-visitor answer are never publicly cacheable", async () => {
      const perVisitor = async (res, label, { vary = false } = {}) => {
        const cc = res.headers.get("cache-control") ?? "";
        assert.match(cc, /private|no-store/, `${label}: ${cc}`);
        assert.doesNotMatch(cc, /public|s-maxage/, `${label}: ${cc}`);
        if (vary) assert.match(res.headers.get("vary") ?? "", /Cookie/, `${label}: Vary`);
        assert.notEqual(res.status, 500, label);
        await res.arrayBuffer();
      };
      for (const cookie of [undefined, EVERYTHING, ANALYTICS_ONLY]) {
        const headers = cookie ? { cookie } : {};
        await perVisitor(await request(stack, "/edge/loader.js", { headers }), "loader", { vary: true });
        await perVisitor(await request(stack, "/edge/loader.js?page=0", { headers }), "loader ?page=0", { vary: true });
        await perVisitor(await request(stack, `/edge/loader.js?wk=${OTHER_WK}`, { headers }), "loader ?wk", { vary: true });
        await perVisitor(await request(stack, "/edge/loader.js", { method: "HEAD", headers }), "HEAD loader", { vary: true });
        await perVisitor(await request(stack, "/edge/consent", { headers }), "consent", { vary: true });
        await perVisitor(await request(stack, `/edge/consent?wk=${OTHER_WK}`, { headers }), "consent ?wk", { vary: true });
        await perVisitor(await post(stack, "/edge/api/v1/t", track(), { cookie: cookie ?? "" }), "event 200");
        await perVisitor(await post(stack, "/edge/api/v1/b", { writeKey: WK, batch: [track()] }, { cookie: cookie ?? "" }), "batch 200");
      }
      await perVisitor(await request(stack, `/edge/loader.js?wk=${STRANGER}`), "loader 404");
      await perVisitor(await request(stack, `/edge/consent?wk=${STRANGER}`), "consent 404");
      await perVisitor(await request(stack, "/edge/healthz"), "healthz");
      await perVisitor(await post(stack, "/edge/api/v1/t", "{"), "event 400");
      await perVisitor(await post(stack, "/edge/api/v1/t", track({ writeKey: STRANGER }), { authorization: "" }), "event 403");
      await perVisitor(await request(stack, "/edge/api/v1/t", { method: "GET" }), "event 405");
      await perVisitor(await post(stack, "/edge/api/v1/t", track({ properties: { pad: "x".repeat(40_000) } })), "event 413");
      stack.segment.state.apiFailures.push({ status: 503, headers: { "retry-after": "5", "cache-control": "public, max-age=600" } });
      await perVisitor(await post(stack, "/edge/api/v1/t", track()), "event 503 from upstream");
      await perVisitor(await post(stack, "/edge/api/v1/t", track(), { origin: "https://evil.example" }), "event 403 foreign origin");
      const collectionRefused = await post(stack, "/edge/api/v1/t", track({ integrations: { "Segment.io": false } }));
      assert.equal(collectionRefused.headers.get("x-consent-dropped"), "1");
      await perVisitor(collectionRefused, "event dropped at the edge");
    });

    test("the CDN cache serves each host its own settings patch, and cannot carry one visitor's data to another", async () => {
      const settingsOf = async (base, headers = {}) => {
        const res = await stack.mf.dispatchFetch(`${base}/edge/cdn/v1/projects/${OTHER_WK}/settings`, { headers });
        assert.equal(res.status, 200);
        return res.json();
      };
      const a = await settingsOf("http://a.example", { cookie: EVERYTHING, authorization: AUTH });
      const b = await settingsOf("https://b.example");
      const a2 = await settingsOf("http://a.example", { cookie: "OptanonConsent=groups=C0001%3A1%2CEVIL%3A1" });
      assert.equal(a.integrations["Segment.io"].apiHost, "a.example/edge/api/v1");
      assert.equal(b.integrations["Segment.io"].apiHost, "b.example/edge/api/v1");
      assert.equal(b.integrations["Segment.io"].protocol, "https");
      assert.deepEqual(a2, a, "the same host gets the same document whatever the visitor sends");
      assert.equal(stack.segment.state.requests.filter((r) => r.path === `/v1/projects/${OTHER_WK}/settings`).length, 1, "one upstream fetch, then the cache");

      // A visitor's cookie, credentials and query never travel to the CDN or into its cached copy.
      const first = await request(stack, `/edge/cdn${BUNDLE}?v=<script>`, { headers: { cookie: EVERYTHING, authorization: AUTH, "sec-gpc": "1" } });
      assert.equal(first.status, 200);
      const firstBytes = Buffer.from(await first.arrayBuffer());
      const second = await request(stack, `/edge/cdn${BUNDLE}`);
      assert.deepEqual(Buffer.from(await second.arrayBuffer()), firstBytes);
      for (const r of stack.segment.state.requests) {
        assert.equal(r.headers.cookie, undefined, r.path);
        assert.equal(r.headers.authorization, undefined, r.path);
        assert.equal(r.headers["sec-gpc"], undefined, r.path);
        assert.equal(r.search, "", `${r.path}: no query upstream`);
      }
    });

    test("rendered loaders are never shared between visitors or hosts", async () => {
      const load = async (base, cookie) => loaderData(await (await stack.mf.dispatchFetch(`${base}/edge/loader.js`, { headers: cookie ? { cookie } : {} })).text());
      const everything = await load("http://a.example", EVERYTHING);
      assert.equal(everything.consent.integrations["Facebook Pixel"], true);
      const nobody = await load("http://a.example");
      assert.equal(nobody.consent.integrations["Facebook Pixel"], false, "a visitor without consent does not get the previous visitor's");
      assert.deepEqual(Object.keys(nobody.consent.groups).sort(), ["C0001", "C0002", "C0003", "C0004", "C0005"]);
      const hostile = await load("http://a.example", "OptanonConsent=groups=C0001%3A1%2CC0002%3A1%2CEVIL%3C%2Fscript%3E%3A1");
      assert.equal(hostile.consent.groups["EVIL</script>"], true);
      const plain = await load("http://a.example", ANALYTICS_ONLY);
      assert.equal(plain.consent.groups["EVIL</script>"], undefined, "another visitor's group ids do not leak");
      const otherHost = await load("https://b.example", EVERYTHING);
      assert.equal(otherHost.cdn, "https://b.example/edge/cdn");
      assert.equal((await load("http://a.example", EVERYTHING)).cdn, "http://a.example/edge/cdn");
    });
  });
});
