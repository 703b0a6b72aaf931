// The built Worker (wasm) in workerd via Miniflare: real KV, real cron
// trigger, real fetch; only Segment's servers are the local fake.
import { test, describe, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { startStack } from "../dev/stack.mjs";
import { WK, OTHER_WK, AUTH, optanon, ANALYTICS_ONLY, EVERYTHING, request, getJson, loaderData, loaderBlock, track, post, eventually, sharedStack } from "./support/helpers.mjs";

const VARS = { WRITE_KEYS: `${WK},${OTHER_WK}` };

describe("healthz and consent", () => {
  const stack = sharedStack(VARS);

  test("healthz reports version, config and each write key", async () => {
    const { res, body } = await getJson(stack, "/edge/healthz");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.equal(body.ok, true);
    assert.match(body.version, /^\d+\.\d+\.\d+$/);
    assert.deepEqual(body.configErrors, []);
    const key = body.writeKeys[WK.slice(0, 6) + "…"];
    assert.equal(key.destinations, 8);
    assert.ok(key.ageSeconds >= 0 && key.ageSeconds < 60, JSON.stringify(key));
    assert.equal(key.lastRefresh.ok, true);
    assert.ok(!JSON.stringify(body).includes(WK), "write keys are shortened");
  });

  test("no cookie under opt-in: only the strict group", async () => {
    const { res, body } = await getJson(stack, "/edge/consent");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("cache-control"), /private/);
    assert.match(res.headers.get("vary"), /Cookie/);
    assert.equal(body.model, "opt-in");
    assert.equal(body.source, "default");
    assert.equal(body.gpc, false);
    assert.equal(body.collection, true);
    assert.deepEqual(body.groups, { C0001: true, C0002: false, C0004: false, C0003: false, C0005: false });
    assert.equal(body.integrations.All, false);
    assert.equal(body.integrations["Segment.io"], true);
    for (const [key, d] of Object.entries(body.destinations)) assert.equal(d.enabled, false, key);
  });

  test("a cookie granting Analytics enables exactly the Analytics destinations, with reasons", async () => {
    const { body } = await getJson(stack, "/edge/consent", { headers: { cookie: `_ga=GA1.2.3; ${ANALYTICS_ONLY}; OptanonAlertBoxClosed=2026-11-25T09:00:00.000Z` } });
    assert.equal(body.source, "cookie");
    const enabled = Object.entries(body.destinations).filter(([, d]) => d.enabled).map(([k]) => k).sort();
    assert.deepEqual(enabled, ["Actions Amplitude", "Google Analytics 4 Web", "Webhooks"]);
    assert.deepEqual(body.destinations["Facebook Pixel"], {
      name: "Facebook Pixel",
      enabled: false,
      groups: ["C0004"],
      reason: "category Advertising → C0004 not granted",
    });
    assert.equal(body.destinations["Google Analytics 4 Web"].reason, "consentSettings.categories → C0002 granted");
    assert.equal(body.destinations["Homegrown Tool"].reason, 'category "Other" maps to no group → ALL_DEFAULT false');
    assert.equal(body.destinations["Twitter Ads"].name, "Twitter Ads", "no creationName: keyed by name");
    assert.equal(body.onetrust, "C0001:1,C0002:1,C0003:0,C0004:0,C0005:0");
  });

  test("cookie shapes: double encoding, quotes, two copies, garbage", async () => {
    const doubly = "OptanonConsent=" + encodeURIComponent(ANALYTICS_ONLY.slice("OptanonConsent=".length));
    const cases = [
      [doubly, { C0002: true, C0004: false }, "cookie"],
      [`OptanonConsent="groups=C0001%3A1%2CC0004%3A1"`, { C0002: false, C0004: true }, "cookie"],
      [`${optanon("C0001:1,C0002:1,C0004:1")}; ${optanon("C0001:1,C0002:1,C0004:0")}`, { C0002: true, C0004: false }, "cookie"],
      ["OptanonConsent=%%%garbage%zz", { C0002: false, C0004: false }, "default"],
      ["OptanonConsent=groups=", { C0002: false, C0004: false }, "default"],
    ];
    for (const [cookie, expected, source] of cases) {
      const { res, body } = await getJson(stack, "/edge/consent", { headers: { cookie } });
      assert.equal(res.status, 200, cookie);
      assert.equal(body.source, source, cookie);
      for (const [group, granted] of Object.entries(expected)) assert.equal(body.groups[group], granted, `${group} in ${cookie}`);
    }
  });

  test("Sec-GPC denies C0004 unless the visitor chose it", async () => {
    const untouched = optanon("C0001:1,C0002:1,C0004:1", { interactionCount: "0" });
    let { body } = await getJson(stack, "/edge/consent", { headers: { cookie: untouched, "sec-gpc": "1" } });
    assert.equal(body.gpc, true);
    assert.equal(body.groups.C0004, false);
    ({ body } = await getJson(stack, "/edge/consent", { headers: { cookie: optanon("C0001:1,C0004:1", { interactionCount: "2" }), "sec-gpc": "1" } }));
    assert.equal(body.groups.C0004, true);
    ({ body } = await getJson(stack, "/edge/consent", { headers: { cookie: optanon("C0001:1,C0004:1", { interactionCount: "0", isGpcEnabled: "1" }) } }));
    assert.equal(body.gpc, true);
    assert.equal(body.groups.C0004, false);
  });

  test("an unknown write key is a 404", async () => {
    const res = await request(stack, "/edge/consent?wk=stranger");
    assert.equal(res.status, 404);
    const { body } = await getJson(stack, `/edge/consent?wk=${OTHER_WK}`);
    assert.equal(body.model, "opt-in");
  });

  test("unknown paths and wrong methods", async () => {
    assert.equal((await request(stack, "/edge/nope")).status, 404);
    const res = await request(stack, "/edge/consent", { method: "POST", body: "{}" });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("allow"), "GET, HEAD");
    assert.equal((await request(stack, "/edge/api/v1/t")).status, 405);
  });
});

describe("consent models", () => {
  let geo;
  before(async () => {
    geo = await startStack({ vars: { ...VARS, CONSENT_MODEL: "geo" } });
    await geo.cron();
  });
  after(() => geo.dispose());

  test("geo: the cookie's country first, then the request's", async () => {
    const us = await getJson(geo, "/edge/consent", { cf: { country: "US" } });
    assert.equal(us.body.model, "opt-out");
    assert.equal(us.body.groups.C0004, true);
    const de = await getJson(geo, "/edge/consent", { cf: { country: "DE" } });
    assert.equal(de.body.model, "opt-in");
    assert.equal(de.body.groups.C0004, false);
    const unknown = await getJson(geo, "/edge/consent", { cf: { country: "XX" } });
    assert.equal(unknown.body.model, "opt-in");
    const cookieSaysUs = await getJson(geo, "/edge/consent", { cf: { country: "FR" }, headers: { cookie: "OptanonConsent=geolocation=US%3BCA&groups=" } });
    assert.equal(cookieSaysUs.body.model, "opt-out");
    assert.equal(cookieSaysUs.body.source, "default");
    const gpc = await getJson(geo, "/edge/consent", { cf: { country: "US" }, headers: { "sec-gpc": "1" } });
    assert.equal(gpc.body.groups.C0004, false);
    assert.equal(gpc.body.groups.C0002, true);
  });
});

describe("broken configuration fails closed", () => {
  const stack = sharedStack({ ...VARS, CATEGORY_MAP: "{not json", CONSENT_MODEL: "opt-out", MODE: "sideways" });

  test("healthz is 503 and names each key", async () => {
    const { res, body } = await getJson(stack, "/edge/healthz");
    assert.equal(res.status, 503);
    assert.equal(body.ok, false);
    assert.deepEqual(body.configErrors.map((e) => e.key).sort(), ["CATEGORY_MAP", "MODE"]);
    assert.match(body.configErrors.find((e) => e.key === "MODE").message, /integrations, context or both/);
  });

  test("consent is denied, collection continues, nothing is enabled", async () => {
    const { body } = await getJson(stack, "/edge/consent", { headers: { cookie: EVERYTHING } });
    assert.deepEqual(Object.values(body.groups).filter(Boolean).length, 1, JSON.stringify(body.groups));
    assert.ok(Object.values(body.destinations).every((d) => !d.enabled && d.reason.startsWith("configuration error")));
    const res = await post(stack, "/edge/api/v1/t", track());
    assert.equal(res.status, 200);
    const [sent] = stack.segment.events();
    assert.equal(sent.integrations["Actions Amplitude"], false);
    assert.equal(sent.integrations.All, false);
  });
});

describe("loader", () => {
  const stack = sharedStack(VARS);

  test("headers and first-party URLs", async () => {
    const res = await request(stack, "/edge/loader.js");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/javascript; charset=utf-8");
    assert.match(res.headers.get("cache-control"), /^private/);
    assert.match(res.headers.get("vary"), /Cookie/);
    const data = loaderData(await res.text());
    assert.equal(data.writeKey, WK, "no ?wk= uses the first key");
    assert.equal(data.cdn, `${stack.url}/edge/cdn`);
    assert.equal(data.apiHost, `${new URL(stack.url).host}/edge/api/v1`);
    assert.equal(data.protocol, "http");
    assert.equal(data.consentUrl, `/edge/consent?wk=${WK}`);
    const other = loaderData(await (await request(stack, `/edge/loader.js?wk=${OTHER_WK}`)).text());
    assert.equal(other.writeKey, OTHER_WK);
  });

  test("consent resolved per request: none, granted, denied, GPC", async () => {
    const data = async (headers) => loaderData(await (await request(stack, "/edge/loader.js", { headers })).text()).consent;
    const none = await data({});
    assert.equal(none.integrations["Google Analytics 4 Web"], false);
    assert.equal(none.integrations["Segment.io"], true);
    const analytics = await data({ cookie: ANALYTICS_ONLY });
    assert.equal(analytics.integrations["Google Analytics 4 Web"], true);
    assert.equal(analytics.integrations["Facebook Pixel"], false);
    assert.deepEqual(analytics.groups, { C0001: true, C0002: true, C0003: false, C0004: false, C0005: false });
    const all = await data({ cookie: EVERYTHING });
    assert.equal(all.integrations["Facebook Pixel"], true);
    assert.equal(all.integrations["Homegrown Tool"], false, "unmapped follows ALL_DEFAULT");
    const gpc = await data({ cookie: optanon("C0001:1,C0002:1,C0004:1", { interactionCount: "0" }), "sec-gpc": "1" });
    assert.equal(gpc.integrations["Facebook Pixel"], false);
    assert.equal(gpc.integrations["Google Analytics 4 Web"], true);
  });

  test("one visitor's page views: the memoised script is served whole every time, and follows their cookies", async () => {
    // A page's views differ in their other cookies, not in OneTrust's: one
    // resolution, one rendered script, handed to every response.
    const view = async (cookie) => {
      const res = await request(stack, "/edge/loader.js", { headers: { cookie } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "application/javascript; charset=utf-8");
      return res.text();
    };
    const views = [];
    for (let i = 0; i < 4; i++) views.push(await view(`_ga=GA1.1.${i}; ${ANALYTICS_ONLY}; session=s${i}`));
    assert.ok(views[0].length > 1000);
    for (const v of views) assert.equal(v, views[0]);
    assert.equal(loaderData(views[0]).consent.integrations["Facebook Pixel"], false);
    // The visitor accepts everything: the next view says so, and the one after still does.
    for (let i = 0; i < 2; i++) assert.equal(loaderData(await view(`_ga=GA1.1.9; ${EVERYTHING}`)).consent.integrations["Facebook Pixel"], true);
    assert.equal(await view(`${ANALYTICS_ONLY}; _gid=x`), views[0]);
  });

  test("a hostile cookie cannot break out of the script", async () => {
    const evil = `</script><script>alert(1)</script>'"\\\u2028\u2029<!--`;
    const cookie = `OptanonConsent=groups=C0001%3A1%2C${encodeURIComponent(evil)}%3A1`;
    const js = await (await request(stack, "/edge/loader.js", { headers: { cookie } })).text();
    const block = loaderBlock(js);
    for (const bad of ["<", ">", "'", "\u2028", "\u2029"]) assert.ok(!block.includes(bad), `${JSON.stringify(bad)} escaped`);
    assert.ok(!js.toLowerCase().includes("</script"), "no closing script tag anywhere");
    assert.equal(JSON.parse(block).consent.groups[evil], true, "the value survives, escaped");
    new Function(js); // the whole loader still parses as JavaScript
  });

  test("an unknown write key is a 404 with a JS comment", async () => {
    const res = await request(stack, "/edge/loader.js?wk=*/alert(1)/*");
    assert.equal(res.status, 404);
    assert.match(res.headers.get("content-type"), /javascript/);
    const body = await res.text();
    assert.match(body, /^\/\* consent-edge: .* \*\/\n$/);
    assert.ok(!body.includes("alert"), "the requested key is not echoed");
  });

  test("?page=0 leaves the page call to the site", async () => {
    const data = loaderData(await (await request(stack, "/edge/loader.js?page=0")).text());
    assert.equal(data.page, false);
  });

  test("the pre-consent hold: only an undecided visitor whose decision could enable something", async () => {
    const hold = async (headers) => {
      const loader = loaderData(await (await request(stack, "/edge/loader.js", { headers })).text());
      const { body } = await getJson(stack, "/edge/consent", { headers });
      assert.equal(body.hold, loader.hold > 0, "/consent says what the loader does");
      return [loader.hold, body.undecided];
    };
    assert.deepEqual(await hold({}), [10000, true], "a new visitor");
    assert.deepEqual(await hold({ cookie: optanon("C0001:1,C0002:0", { interactionCount: "0" }) }), [10000, true], "OneTrust's first-visit cookie");
    assert.deepEqual(await hold({ cookie: "OptanonAlertBoxClosed=2026-11-23T09:00:00.000Z" }), [0, false], "the banner was closed");
    assert.deepEqual(await hold({ cookie: ANALYTICS_ONLY }), [0, false], "a choice");
    assert.deepEqual(await hold({ cookie: `${optanon("C0001:1,C0002:0", { interactionCount: "0" })}; OptanonAlertBoxClosed=` }), [10000, true], "an empty alert-box cookie is no choice");
    // The same resolved consent, decided or not, is two different scripts.
    const undecided = await (await request(stack, "/edge/loader.js", { headers: { cookie: optanon("C0001:1", { interactionCount: "0" }) } })).text();
    const decided = await (await request(stack, "/edge/loader.js", { headers: { cookie: optanon("C0001:1") } })).text();
    assert.deepEqual(loaderData(undecided).consent, loaderData(decided).consent);
    assert.deepEqual([loaderData(undecided).hold, loaderData(decided).hold], [10000, 0]);
  });
});

describe("pre-consent hold settings", () => {
  test("PRE_CONSENT_HOLD_MS: a value, 0 (off), and an invalid one (reported, the default, locked down)", async () => {
    for (const [value, expected, ok] of [["2500", 2500, true], ["0", 0, true], ["ten seconds", 10000, false]]) {
      const stack = await startStack({ vars: { ...VARS, PRE_CONSENT_HOLD_MS: value } });
      try {
        await stack.cron();
        const loader = loaderData(await (await request(stack, "/edge/loader.js")).text());
        assert.equal(loader.hold, expected, value);
        const { res, body } = await getJson(stack, "/edge/healthz");
        assert.equal(res.status === 200, ok, value);
        assert.deepEqual(body.configErrors.map((e) => e.key), ok ? [] : ["PRE_CONSENT_HOLD_MS"]);
      } finally {
        await stack.dispose();
      }
    }
  });
});

describe("CDN proxy", () => {
  const stack = sharedStack(VARS, { cron: false });

  test("analytics.js is the npm build, fetched from the CDN", async () => {
    const res = await request(stack, `/edge/cdn/analytics.js/v1/${WK}/analytics.min.js`);
    assert.equal(res.status, 200);
    const npm = readFileSync(new URL("../node_modules/@segment/analytics-next/dist/umd/standalone.js", import.meta.url), "utf8");
    assert.equal(await res.text(), npm);
    assert.equal(stack.segment.state.requests.at(-1).path, `/analytics.js/v1/${WK}/analytics.min.js`);
  });

  test("settings point events at the edge and keep everything else", async () => {
    const { res, body } = await getJson(stack, `/edge/cdn/v1/projects/${WK}/settings`);
    assert.equal(res.status, 200);
    const host = new URL(stack.url).host;
    assert.equal(body.integrations["Segment.io"].apiHost, `${host}/edge/api/v1`);
    assert.equal(body.integrations["Segment.io"].protocol, "http");
    assert.equal(body.integrations["Segment.io"].apiKey, WK);
    assert.deepEqual(body.remotePlugins.map((p) => p.libraryName), ["fakeAnalyticsDestination", "fakeAdsDestination", "fakeChatDestination"]);
    assert.deepEqual(body.integrations["Intercom Web (Actions)"].consentSettings, { categories: ["C0003"] });
  });

  test("the settings patch follows the request's own host, not a cached one", async () => {
    const a = await (await stack.mf.dispatchFetch(`http://a.example/edge/cdn/v1/projects/${WK}/settings`)).json();
    const b = await (await stack.mf.dispatchFetch(`https://b.example/edge/cdn/v1/projects/${WK}/settings`)).json();
    assert.equal(a.integrations["Segment.io"].apiHost, "a.example/edge/api/v1");
    assert.equal(b.integrations["Segment.io"].apiHost, "b.example/edge/api/v1");
    assert.equal(b.integrations["Segment.io"].protocol, "https");
  });

  test("bundles and device-mode code, cached after the first fetch", async () => {
    const bundle = "/analytics-next/bundles/ajs-destination.bundle.40628baed746e9904edc.js";
    for (let i = 0; i < 3; i++) assert.equal((await request(stack, `/edge/cdn${bundle}`)).status, 200);
    assert.equal(stack.segment.state.requests.filter((r) => r.path === bundle).length, 1, "served from the Cache API after the first");
    const plugin = await request(stack, "/edge/cdn/next-integrations/actions/fake-ads/d4e5f6.js");
    assert.equal(plugin.status, 200);
    assert.match(await plugin.text(), /fakeAdsDestination/);
  });

  test("anything else is a 404 and nothing is fetched", async () => {
    const paths = [
      "/edge/cdn/analytics.js/v1/stranger/analytics.min.js",
      "/edge/cdn/v1/projects/stranger/settings",
      `/edge/cdn/v1/projects/${WK}/integrations`,
      "/edge/cdn/next-integrations/%2e%2e/%2e%2e/v1/projects/stranger/settings",
      "/edge/cdn/next-integrations/a%2fb.js",
      "/edge/cdn/next-integrations/a%5cb.js",
      "/edge/cdn/analytics-next/bundles/..%2f..%2fsecret",
      "/edge/cdn//analytics-next/bundles/x.js",
      "/edge/cdn/other/file.js",
    ];
    for (const path of paths) {
      const res = await request(stack, path);
      assert.equal(res.status, 404, path);
    }
    assert.deepEqual(stack.segment.state.requests, [], "no upstream call");
  });

  test("upstream errors are passed through", async () => {
    stack.segment.state.cdnFailures.push({ status: 503, body: "try later" });
    const res = await request(stack, `/edge/cdn/v1/projects/${OTHER_WK}/settings`);
    assert.equal(res.status, 503);
    stack.segment.state.cdnFailures.push("reset");
    assert.equal((await request(stack, `/edge/cdn/v1/projects/${OTHER_WK}/settings`)).status, 502);
  });
});

describe("tracking proxy", () => {
  const stack = sharedStack(VARS);

  const PATHS = ["t", "p", "i", "g", "a", "s", "track", "page", "identify", "group", "alias", "screen"];

  test("every path, short and long, goes to the same path upstream", async () => {
    for (const path of PATHS) {
      const res = await post(stack, `/edge/api/v1/${path}`, track({ type: "track" }), { cookie: ANALYTICS_ONLY });
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get("x-consent-forwarded"), "1");
      assert.equal(stack.segment.state.posts.at(-1).path, `/v1/${path}`);
    }
    assert.equal(stack.segment.state.posts.length, PATHS.length);
  });

  test("consent is stamped per the cookie, other fields kept", async () => {
    const event = track();
    const res = await post(stack, "/edge/api/v1/t", event, { cookie: ANALYTICS_ONLY, "cf-connecting-ip": "203.0.113.7", "x-retry-count": "2", "user-agent": "Mozilla/5.0 test" });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { success: true });
    const [{ body: sent, headers }] = stack.segment.state.posts;
    assert.equal(sent.integrations["Google Analytics 4 Web"], true);
    assert.equal(sent.integrations["Facebook Pixel"], false);
    assert.equal(sent.integrations.All, false);
    assert.equal(sent.integrations["Segment.io"], true);
    assert.deepEqual(sent.context.consent.categoryPreferences, { C0001: true, C0002: true, C0003: false, C0004: false, C0005: false });
    assert.equal(sent.context.consent.onetrust, "C0001:1,C0002:1,C0003:0,C0004:0,C0005:0");
    assert.equal(sent.context.ip, "203.0.113.7");
    assert.deepEqual(sent.context.page, event.context.page);
    assert.deepEqual(sent.properties, event.properties);
    assert.equal(sent.messageId, event.messageId);
    assert.equal(headers.authorization, AUTH);
    assert.equal(headers["x-retry-count"], "2");
    assert.equal(headers["user-agent"], "Mozilla/5.0 test");
    assert.equal(headers["content-type"], "text/plain");
    assert.equal(headers.cookie, undefined, "cookies are not forwarded");
  });

  test("a tampered client is corrected", async () => {
    const event = track({ integrations: { All: true, "Facebook Pixel": { pixelId: "x" }, "Made Up": true }, context: { consent: { categoryPreferences: { C0004: true } } } });
    await post(stack, "/edge/api/v1/t", event, { cookie: ANALYTICS_ONLY });
    const [{ body: sent }] = stack.segment.state.posts;
    assert.equal(sent.integrations.All, false);
    assert.equal(sent.integrations["Facebook Pixel"], false);
    assert.equal(sent.integrations["Made Up"], false, "a destination the list does not know follows ALL_DEFAULT");
    assert.equal(sent.context.consent.categoryPreferences.C0004, false);
  });

  test("a batch with mixed consent goes up as one batch of the kept events", async () => {
    const body = {
      writeKey: WK,
      sentAt: new Date().toISOString(),
      batch: [
        track({ messageId: "a" }),
        track({ messageId: "b", integrations: { "Segment.io": false } }),
        track({ messageId: "c", context: { consent: { categoryPreferences: { C0002: false } } } }),
      ],
    };
    const res = await post(stack, "/edge/api/v1/b", body, { cookie: ANALYTICS_ONLY });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-consent-forwarded"), "2");
    assert.equal(res.headers.get("x-consent-dropped"), "1");
    assert.equal(stack.segment.state.posts.length, 1);
    const sent = stack.segment.state.posts[0].body;
    assert.deepEqual(sent.batch.map((e) => e.messageId), ["a", "c"]);
    assert.equal(sent.batch[0].integrations["Google Analytics 4 Web"], true);
    assert.equal(sent.batch[1].integrations["Google Analytics 4 Web"], false, "a stamped refusal is kept");
  });

  test("when every event is dropped, 200 and no upstream call", async () => {
    const strict = await startStack({ vars: { ...VARS, COLLECTION_GROUP: "C0002" } });
    try {
      const res = await post(strict, "/edge/api/v1/t", track());
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-consent-dropped"), "1");
      assert.equal(res.headers.get("x-consent-forwarded"), "0");
      assert.deepEqual(strict.segment.state.posts, []);
      assert.equal(strict.segment.state.requests.filter((r) => r.method === "POST").length, 0);
    } finally {
      await strict.dispose();
    }
  });

  test("bad requests: 403, 400, 405, 413, each with a JSON message and nothing forwarded", async () => {
    const cases = [
      [await post(stack, "/edge/api/v1/t", track({ writeKey: "stranger" }), { authorization: "" }), 403],
      [await post(stack, "/edge/api/v1/t", track(), { authorization: "Basic " + Buffer.from(OTHER_WK + ":").toString("base64") }), 403],
      [await post(stack, "/edge/api/v1/t", { type: "track" }, { authorization: "" }), 403],
      [await post(stack, "/edge/api/v1/t", "{not json"), 400],
      [await post(stack, "/edge/api/v1/b", { batch: "nope", writeKey: WK }), 400],
      [await request(stack, "/edge/api/v1/t", { method: "PUT", body: "{}" }), 405],
      [await post(stack, "/edge/api/v1/t", track({ properties: { pad: "x".repeat(33 * 1024) } })), 413],
      [await post(stack, "/edge/api/v1/b", { writeKey: WK, batch: Array.from({ length: 20 }, () => track({ properties: { pad: "x".repeat(30_000) } })) }), 413],
    ];
    for (const [res, status] of cases) {
      assert.equal(res.status, status);
      const body = await res.json();
      assert.equal(body.status, status);
      assert.ok(body.error.length > 5, body.error);
    }
    assert.deepEqual(stack.segment.state.posts, []);
  });

  test("upstream 5xx and 429 come back with Retry-After so analytics.js retries", async () => {
    stack.segment.state.apiFailures.push({ status: 500 }, { status: 429, headers: { "retry-after": "7" } }, { status: 503, headers: { "retry-after": "30" } });
    const first = await post(stack, "/edge/api/v1/t", track());
    assert.equal(first.status, 500);
    const second = await post(stack, "/edge/api/v1/t", track());
    assert.equal(second.status, 429);
    assert.equal(second.headers.get("retry-after"), "7");
    const third = await post(stack, "/edge/api/v1/t", track());
    assert.equal(third.status, 503);
    assert.equal(third.headers.get("retry-after"), "30");
    stack.segment.state.apiFailures.push({ status: "reset" });
    assert.equal((await post(stack, "/edge/api/v1/t", track())).status, 502);
  });

  test("metrics are forwarded unchanged", async () => {
    const metrics = { series: [{ type: "Counter", metric: "analytics_js.invoke", value: 1, tags: { wk: WK } }] };
    const res = await post(stack, "/edge/api/v1/m", metrics, { authorization: "" });
    assert.equal(res.status, 200);
    assert.deepEqual(stack.segment.state.posts.at(-1), { ...stack.segment.state.posts.at(-1), path: "/v1/m", body: metrics });
  });

  test("CORS: the own origin and ALLOWED_ORIGINS only", async () => {
    const own = new URL(stack.url).origin;
    const preflight = await request(stack, "/edge/api/v1/t", {
      method: "OPTIONS",
      headers: { origin: own, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type,x-retry-count" },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), own);
    assert.match(preflight.headers.get("access-control-allow-headers"), /Authorization/);
    assert.match(preflight.headers.get("access-control-allow-headers"), /X-Retry-Count/);
    const foreign = await request(stack, "/edge/api/v1/t", { method: "OPTIONS", headers: { origin: "https://evil.example" } });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.headers.get("access-control-allow-origin"), null);
    const foreignPost = await post(stack, "/edge/api/v1/t", track(), { origin: "https://evil.example" });
    assert.equal(foreignPost.status, 403);
    assert.deepEqual(stack.segment.state.posts, []);
    const ownPost = await post(stack, "/edge/api/v1/t", track(), { origin: own });
    assert.equal(ownPost.status, 200);
    assert.equal(ownPost.headers.get("access-control-allow-origin"), own);
  });

  test("ALLOWED_ORIGINS replaces the default", async () => {
    const listed = await startStack({ vars: { ...VARS, ALLOWED_ORIGINS: "https://www.shop.example" } });
    try {
      const ok = await post(listed, "/edge/api/v1/t", track(), { origin: "https://www.shop.example" });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get("access-control-allow-origin"), "https://www.shop.example");
      const own = await post(listed, "/edge/api/v1/t", track(), { origin: new URL(listed.url).origin });
      assert.equal(own.status, 403);
    } finally {
      await listed.dispose();
    }
  });
});

describe("destination list in KV", () => {
  let stack;
  beforeEach(async () => {
    stack = await startStack({ vars: VARS });
  });
  afterEach(() => stack.dispose());

  const integrationsCalls = () => stack.segment.state.requests.filter((r) => r.path.endsWith("/integrations")).length;

  test("the cron trigger fills KV for every write key", async () => {
    await stack.cron();
    const kv = await stack.kv();
    for (const wk of [WK, OTHER_WK]) {
      const stored = await kv.get(`v1:destinations:${wk}`, "json");
      assert.equal(stored.destinations.length, 8);
      assert.match(stored.fetchedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      const ga = stored.destinations.find((d) => d.creationName === "Google Analytics 4 Web");
      assert.deepEqual(ga, { name: "Google Analytics 4 Web", creationName: "Google Analytics 4 Web", category: "Analytics", consentCategories: ["C0002"] });
      const status = await kv.get(`v1:refresh:${wk}`, "json");
      assert.equal(status.ok, true);
    }
  });

  test("a failing upstream leaves KV unchanged and says why", async () => {
    await stack.cron();
    const kv = await stack.kv();
    const before = [await kv.get(`v1:destinations:${WK}`), await kv.get(`v1:destinations:${OTHER_WK}`)];
    const failures = [
      [{ status: 500 }, /integrations answered HTTP 500|settings answered HTTP 500/],
      [{ status: 200, body: "<html>oops</html>" }, /invalid JSON/],
      [{ status: 200, body: '{"error": "not a list"}' }, /unexpected shape|invalid JSON/],
      ["reset", /network error/],
    ];
    for (const [failure, reason] of failures) {
      stack.segment.state.cdnFailures.push(failure, failure, failure, failure);
      await stack.cron();
      assert.deepEqual([await kv.get(`v1:destinations:${WK}`), await kv.get(`v1:destinations:${OTHER_WK}`)], before);
      const { body } = await getJson(stack, "/edge/healthz");
      for (const key of Object.values(body.writeKeys)) {
        assert.equal(key.lastRefresh.ok, false);
        assert.match(key.lastRefresh.reason, reason);
        assert.equal(key.destinations, 8, "the last good list stays");
      }
    }
  });

  test("an empty KV: the first tracking posts are forwarded under the failsafe and trigger exactly one fetch", async () => {
    // Through the entry module's "load the list, then decide again" step.
    const sent = await Promise.all(Array.from({ length: 10 }, () => post(stack, "/edge/api/v1/t", track(), { cookie: EVERYTHING })));
    assert.deepEqual(sent.map((r) => r.status), Array(10).fill(200));
    const events = stack.segment.events();
    assert.equal(events.length, 10, "every post forwarded once");
    const failsafe = events.filter((e) => e.integrations["Facebook Pixel"] === undefined);
    assert.ok(failsafe.length >= 1, "the first post does not wait for the fetch");
    for (const e of failsafe) assert.deepEqual(e.integrations, { All: false, "Segment.io": true });
    const kv = await stack.kv();
    await eventually(async () => kv.get(`v1:destinations:${WK}`));
    assert.equal(integrationsCalls(), 1, "one inline fetch, no stampede");
    await post(stack, "/edge/api/v1/t", track(), { cookie: EVERYTHING });
    assert.equal(stack.segment.events().at(-1).integrations["Facebook Pixel"], true, "the fetched list applies");
  });

  test("an empty KV: the first requests use the failsafe and trigger exactly one fetch", async () => {
    const responses = await Promise.all(Array.from({ length: 10 }, () => getJson(stack, "/edge/consent", { headers: { cookie: EVERYTHING } })));
    // Those answered before the background fetch lands use the failsafe (under
    // load, a late one may already see the fetched list).
    const failsafe = responses.filter(({ body }) => body.destinationsFetchedAt === null);
    assert.ok(failsafe.length >= 1, "the first request does not wait for the fetch");
    for (const { body } of failsafe) {
      assert.deepEqual(body.destinations, {}, "failsafe: no destination known yet");
      assert.deepEqual(body.integrations, { All: false, "Segment.io": true });
    }
    const kv = await stack.kv();
    await eventually(async () => kv.get(`v1:destinations:${WK}`));
    assert.equal(integrationsCalls(), 1, "one inline fetch, no stampede");
    const { body } = await getJson(stack, "/edge/consent", { headers: { cookie: EVERYTHING } });
    assert.equal(body.destinations["Facebook Pixel"].enabled, true);
  });

  test("healthz shows each list's age and the last refresh", async () => {
    let { body } = await getJson(stack, "/edge/healthz");
    assert.equal(body.writeKeys[WK.slice(0, 6) + "…"].ageSeconds, null);
    assert.equal(body.writeKeys[WK.slice(0, 6) + "…"].lastRefresh, null);
    await stack.cron();
    ({ body } = await getJson(stack, "/edge/healthz"));
    const key = body.writeKeys[WK.slice(0, 6) + "…"];
    assert.ok(Number.isInteger(key.ageSeconds) && key.ageSeconds <= 5);
    assert.equal(key.lastRefresh.ok, true);
    assert.equal(key.lastRefresh.reason, "8 destinations");
  });

  test("the loader changes once a refresh adds a destination", async () => {
    await stack.cron();
    const load = async () => loaderData(await (await request(stack, "/edge/loader.js", { headers: { cookie: EVERYTHING } })).text());
    assert.equal((await load()).consent.integrations["Braze Web"], undefined);
    stack.segment.state.projects = [...stack.segment.state.projects, { name: "Braze Web", creationName: "Braze Web", category: "Email Marketing" }];
    await stack.cron();
    assert.equal((await load()).consent.integrations["Braze Web"], true);
  });

  test("ten write keys refresh concurrently", async () => {
    const keys = Array.from({ length: 10 }, (_, i) => `wk_many_${i}`);
    const many = await startStack({ vars: { WRITE_KEYS: keys.join(",") } });
    try {
      many.segment.state.cdnDelayMs = 50; // each Projects API / settings answer takes 50 ms
      const started = performance.now();
      await many.cron();
      const ms = performance.now() - started;
      const kv = await many.kv();
      for (const wk of keys) assert.equal((await kv.get(`v1:destinations:${wk}`, "json")).destinations.length, 8, wk);
      // 20 upstream calls of 50 ms each: every key's at once, not one after the other.
      assert.ok(many.segment.state.cdnMaxInFlight >= keys.length, `at most ${many.segment.state.cdnMaxInFlight} calls at once`);
      console.log(`refresh of ${keys.length} write keys (50 ms upstream): ${ms.toFixed(0)} ms, ${many.segment.state.cdnMaxInFlight} calls at once`);
    } finally {
      await many.dispose();
    }
  });

  test("a warm isolate does not read KV per request", async () => {
    await stack.cron();
    await request(stack, "/edge/loader.js");
    // Remove the stored list behind the Worker's back: a warm isolate keeps serving
    // its copy, which it could not if it read KV on each request.
    const kv = await stack.kv();
    await kv.delete(`v1:destinations:${WK}`);
    for (let i = 0; i < 100; i++) {
      const { body } = await getJson(stack, "/edge/consent", { headers: { cookie: EVERYTHING } });
      assert.equal(body.destinations["Facebook Pixel"]?.enabled, true, `request ${i}`);
    }
    assert.equal(integrationsCalls(), 2, "only the cron's fetch of each key, no inline fetch");
  });
});
