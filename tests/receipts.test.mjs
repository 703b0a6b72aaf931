// Consent receipts (issue 17, DESIGN.md "Consent receipts") on the built
// Worker in workerd: what every forwarded event carries, the rules snapshots
// behind the digests, and how often KV is touched for them.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { startStack } from "../dev/stack.mjs";
import { WK, OTHER_WK, AUTH, optanon, ANALYTICS_ONLY, request, getJson, track, post, eventually, sharedStack } from "./support/helpers.mjs";

const VARS = { WRITE_KEYS: `${WK},${OTHER_WK}` };
const CLOSED = "OptanonAlertBoxClosed=2026-11-23T09:00:00.000Z";
const CONSENT_ID = "6fcfe4fe-8de9-4101-bdf9-5dad0faf2611"; // in every `optanon()` cookie
const KEYS = ["v", "source", "decidedAt", "gpc", "country", "rules"];

const sha256 = (text) => createHash("sha256").update(text).digest("hex");

/** Each write key's rules digest, from /healthz. */
async function digests(stack) {
  const { body } = await getJson(stack, "/edge/healthz");
  return Object.fromEntries(Object.entries(body.writeKeys).map(([key, health]) => [key, health.rules]));
}

async function digestOf(stack, wk = WK) {
  return (await digests(stack))[wk.slice(0, 6) + "…"];
}

/** The receipt on the last event Segment received, and that event's raw text. */
function lastReceipt(stack) {
  const { body, raw } = stack.segment.state.posts.at(-1);
  return { receipt: body.context?.consent?.receipt, raw, body };
}

/** How many times the Worker got and put each `v1:rules:*` key. */
async function rulesOps(stack) {
  const counts = {};
  for (const [op, key] of await stack.kvOps()) {
    if (!key.startsWith("v1:rules:")) continue;
    counts[key] ??= { get: 0, put: 0 };
    counts[key][op] += 1;
  }
  return counts;
}

describe("receipts on every forwarded event", () => {
  const stack = sharedStack(VARS);

  test("a single event: the edge's receipt, keys in order, other context fields kept", async () => {
    const rules = await digestOf(stack);
    assert.match(rules, /^[0-9a-f]{16}$/);
    const event = track();
    const res = await post(stack, "/edge/api/v1/t", event, { cookie: `${ANALYTICS_ONLY}; ${CLOSED}` });
    assert.equal(res.status, 200);
    const { receipt, raw, body } = lastReceipt(stack);
    assert.deepEqual(receipt, { v: 1, source: "choice", decidedAt: "2026-11-23T09:00:00.000Z", gpc: false, country: null, rules });
    assert.ok(raw.includes(`"receipt":{"v":1,"source":"choice","decidedAt":"2026-11-23T09:00:00.000Z","gpc":false,"country":null,"rules":"${rules}"}`), raw);
    assert.deepEqual(body.context.page, event.context.page);
    assert.deepEqual(body.context.library, event.context.library);
    assert.equal(body.context.consent.onetrust, "C0001:1,C0002:1,C0003:0,C0004:0,C0005:0");
  });

  test("each cookie class, GPC and the time of the choice", async () => {
    const untouched = optanon("C0001:1,C0002:1", { interactionCount: "0" });
    const cases = [
      [{ cookie: ANALYTICS_ONLY }, { source: "choice", decidedAt: null, gpc: false }],
      [{ cookie: untouched }, { source: "cookie", decidedAt: null, gpc: false }],
      [{ cookie: `${untouched}; ${CLOSED}` }, { source: "choice", decidedAt: "2026-11-23T09:00:00.000Z", gpc: false }],
      [{}, { source: "default", decidedAt: null, gpc: false }],
      [{ cookie: "OptanonConsent=groups=" }, { source: "default", decidedAt: null, gpc: false }],
      [{ cookie: CLOSED }, { source: "default", decidedAt: "2026-11-23T09:00:00.000Z", gpc: false }],
      [{ cookie: "OptanonAlertBoxClosed=2026-11-23T09%3A00%3A00.000Z" }, { source: "default", decidedAt: "2026-11-23T09:00:00.000Z", gpc: false }],
      [{ cookie: `${ANALYTICS_ONLY}; OptanonAlertBoxClosed=true` }, { source: "choice", decidedAt: null, gpc: false }],
      [{ cookie: `${ANALYTICS_ONLY}; OptanonAlertBoxClosed=2026-02-30T09:00:00.000Z` }, { source: "choice", decidedAt: null, gpc: false }],
      [{ cookie: ANALYTICS_ONLY, "sec-gpc": "1" }, { source: "choice", decidedAt: null, gpc: true }],
      [{ cookie: optanon("C0001:1", { isGpcEnabled: "1" }) }, { source: "choice", decidedAt: null, gpc: true }],
    ];
    const rules = await digestOf(stack);
    for (const [headers, expected] of cases) {
      await post(stack, "/edge/api/v1/t", track(), headers);
      const { receipt } = lastReceipt(stack);
      assert.deepEqual(receipt, { v: 1, ...expected, country: null, rules }, JSON.stringify(headers));
      assert.deepEqual(Object.keys(receipt), KEYS);
    }
  });

  test("a batch: every event has the receipt; forged ones are replaced, the envelope's corrected", async () => {
    const forged = { v: 1, source: "choice", decidedAt: "2020-01-01T00:00:00.000Z", gpc: false, country: "US", rules: "0000000000000000", extra: true };
    const body = {
      writeKey: WK,
      sentAt: new Date().toISOString(),
      context: { consent: { receipt: forged } },
      batch: [
        track({ messageId: "a" }),
        track({ messageId: "b", context: { consent: { receipt: forged, categoryPreferences: { C0002: false } }, app: { name: "shop" } } }),
        track({ messageId: "c", context: { consent: { receipt: "stale" } } }),
      ],
    };
    const res = await post(stack, "/edge/api/v1/b", body, { cookie: ANALYTICS_ONLY });
    assert.equal(res.status, 200);
    const sent = stack.segment.state.posts.at(-1).body;
    const expected = { v: 1, source: "choice", decidedAt: null, gpc: false, country: null, rules: await digestOf(stack) };
    assert.deepEqual(sent.batch.map((e) => e.context.consent.receipt), [expected, expected, expected]);
    assert.deepEqual(sent.batch[1].context.app, { name: "shop" });
    assert.equal(sent.batch[1].context.consent.categoryPreferences.C0002, false);
    assert.deepEqual(sent.context.consent.receipt, expected, "the envelope's stamped receipt is corrected too");
  });

  test("a forged receipt on a single event is replaced exactly", async () => {
    for (const forged of [{ v: 1, source: "choice", rules: "0123456789abcdef" }, null, "x", [1, 2]]) {
      await post(stack, "/edge/api/v1/track", track({ context: { consent: { receipt: forged } } }), { cookie: ANALYTICS_ONLY });
      const { receipt } = lastReceipt(stack);
      assert.deepEqual(receipt, { v: 1, source: "choice", decidedAt: null, gpc: false, country: null, rules: await digestOf(stack) }, JSON.stringify(forged));
    }
  });

  test("/consent shows the receipt this request's events get", async () => {
    const headers = { cookie: `${ANALYTICS_ONLY}; ${CLOSED}`, "sec-gpc": "1" };
    const { body } = await getJson(stack, "/edge/consent", { headers });
    await post(stack, "/edge/api/v1/t", track(), headers);
    assert.deepEqual(body.receipt, lastReceipt(stack).receipt);
    assert.equal(body.receipt.gpc, true);
    const other = await getJson(stack, `/edge/consent?wk=${OTHER_WK}`);
    assert.equal(other.body.receipt.source, "default");
  });

  test("/healthz shows each write key's digest, and GET /rules/{digest} its snapshot, immutable", async () => {
    const all = await digests(stack);
    assert.deepEqual(Object.keys(all).sort(), [WK.slice(0, 6) + "…", OTHER_WK.slice(0, 6) + "…"].sort());
    const rules = all[WK.slice(0, 6) + "…"];
    assert.equal(all[OTHER_WK.slice(0, 6) + "…"], rules, "same settings, same list: same digest");
    for (const method of ["GET", "HEAD"]) {
      const res = await request(stack, `/edge/rules/${rules}`, { method });
      assert.equal(res.status, 200, method);
      assert.equal(res.headers.get("cache-control"), "public, max-age=31536000, immutable");
      assert.match(res.headers.get("content-type"), /^application\/json/);
      if (method === "HEAD") continue;
      const text = await res.text();
      assert.equal(sha256(text).slice(0, 16), rules, "the digest is the SHA-256 prefix of the body");
      const snapshot = JSON.parse(text);
      assert.equal(JSON.stringify(snapshot), text, "canonical: no whitespace, keys as JSON.stringify writes them back");
      assert.deepEqual(Object.keys(snapshot), ["configErrors", "destinations", "settings", "v"]);
      assert.equal(snapshot.destinations.length, 8);
      assert.deepEqual(snapshot.destinations.find((d) => d.creationName === "Google Analytics 4 Web"), {
        category: "Analytics",
        consentCategories: ["C0002"],
        creationName: "Google Analytics 4 Web",
        name: "Google Analytics 4 Web",
      });
      assert.equal(snapshot.settings.MODE, "both");
      assert.equal(snapshot.settings.CONSENT_MODEL, "opt-in");
      assert.equal(snapshot.settings.PRE_CONSENT_HOLD_MS, 10000);
      assert.deepEqual(snapshot.settings.CATEGORY_MAP.advertising, ["C0004"]);
      assert.equal(snapshot.settings.RECEIPTS, undefined);
    }
  });

  test("an unknown or malformed digest is a 404 JSON error, never cached", async () => {
    const rules = await digestOf(stack);
    const paths = [
      "0123456789abcdef",
      rules.toUpperCase(),
      rules.slice(0, 15),
      rules + "0",
      "../x",
      "..%2fx",
      "%2e%2e%2fhealthz",
      `${rules}/`,
      `${rules}%00`,
      "",
    ];
    for (const path of paths) {
      const res = await request(stack, `/edge/rules/${path}`);
      assert.equal(res.status, 404, path);
      assert.equal(res.headers.get("cache-control"), "no-store", path);
      const body = await res.json();
      assert.equal(body.status, 404, path);
    }
    assert.equal((await request(stack, `/edge/rules/${rules}`, { method: "POST", body: "{}" })).status, 405);
  });
});

describe("rules snapshots in KV", () => {
  test("the cron stores each digest's snapshot once; a burst of posts then reads it at most once and writes nothing", async () => {
    const stack = await startStack({ vars: VARS, kvOps: true });
    try {
      await stack.cron();
      const rules = await digestOf(stack);
      const kv = await stack.kv();
      const stored = await kv.get(`v1:rules:${rules}`);
      assert.equal(sha256(stored).slice(0, 16), rules);
      assert.deepEqual(await rulesOps(stack), { [`v1:rules:${rules}`]: { get: 1, put: 1 } }, "both keys share one snapshot: one put");
      const sent = await Promise.all(Array.from({ length: 50 }, () => post(stack, "/edge/api/v1/t", track(), { cookie: ANALYTICS_ONLY })));
      assert.deepEqual(sent.map((r) => r.status), Array(50).fill(200));
      assert.ok(stack.segment.events().every((e) => e.context.consent.receipt.rules === rules));
      assert.deepEqual(await rulesOps(stack), { [`v1:rules:${rules}`]: { get: 1, put: 1 } }, "no KV call per request");
      await stack.cron();
      assert.deepEqual(await rulesOps(stack), { [`v1:rules:${rules}`]: { get: 1, put: 1 } }, "nor per cron run");
    } finally {
      await stack.dispose();
    }
  });

  test("a burst of 50 posts into an empty KV stores each digest it stamps once", async () => {
    const stack = await startStack({ vars: VARS, kvOps: true });
    try {
      const sent = await Promise.all(Array.from({ length: 50 }, () => post(stack, "/edge/api/v1/t", track(), { cookie: ANALYTICS_ONLY })));
      assert.deepEqual(sent.map((r) => r.status), Array(50).fill(200));
      const stamped = [...new Set(stack.segment.events().map((e) => e.context.consent.receipt.rules))];
      // The failsafe's digest (no list yet) and, once the inline fetch lands, the list's.
      assert.ok(stamped.length >= 1 && stamped.length <= 2, stamped.join());
      const kv = await stack.kv();
      await eventually(async () => (await Promise.all(stamped.map((d) => kv.get(`v1:rules:${d}`)))).every(Boolean));
      const ops = await rulesOps(stack);
      assert.deepEqual(Object.keys(ops).sort(), stamped.map((d) => `v1:rules:${d}`).sort());
      for (const [key, count] of Object.entries(ops)) assert.deepEqual(count, { get: 1, put: 1 }, key);
      for (const digest of stamped) {
        const res = await request(stack, `/edge/rules/${digest}`);
        assert.equal(res.status, 200, digest);
        assert.equal(sha256(await res.text()).slice(0, 16), digest);
      }
    } finally {
      await stack.dispose();
    }
  });

  test("an old digest stays retrievable after the list changes", async () => {
    const stack = await startStack({ vars: VARS });
    try {
      await stack.cron();
      const before = await digestOf(stack);
      stack.segment.state.projects = [...stack.segment.state.projects, { name: "Braze Web", creationName: "Braze Web", category: "Email Marketing" }];
      await stack.cron();
      const after = await digestOf(stack);
      assert.notEqual(after, before, "a list change is a new digest");
      await post(stack, "/edge/api/v1/t", track(), { cookie: ANALYTICS_ONLY });
      assert.equal(lastReceipt(stack).receipt.rules, after);
      for (const digest of [before, after]) assert.equal((await request(stack, `/edge/rules/${digest}`)).status, 200, digest);
      const snapshot = await (await request(stack, `/edge/rules/${after}`)).json();
      assert.ok(snapshot.destinations.some((d) => d.name === "Braze Web"));
    } finally {
      await stack.dispose();
    }
  });
});

describe("RECEIPTS = off", () => {
  const stack = sharedStack({ ...VARS, RECEIPTS: "off" }, { kvOps: true });

  test("no receipt on events, not even a stamped one; none in /consent, no digest in /healthz, no snapshot", async () => {
    await post(stack, "/edge/api/v1/t", track({ context: { consent: { receipt: { v: 1, source: "choice" } } } }), { cookie: ANALYTICS_ONLY });
    const { body } = lastReceipt(stack);
    assert.equal(body.context.consent.receipt, undefined);
    assert.equal(body.context.consent.onetrust, "C0001:1,C0002:1,C0003:0,C0004:0,C0005:0");
    assert.equal((await getJson(stack, "/edge/consent")).body.receipt, null);
    const health = await getJson(stack, "/edge/healthz");
    assert.equal(health.res.status, 200);
    assert.deepEqual(Object.values(await digests(stack)), [null, null]);
    assert.deepEqual(await rulesOps(stack), {});
  });
});

describe("RECEIPTS = with-id", () => {
  const stack = sharedStack({ ...VARS, RECEIPTS: "with-id" });

  test("the receipt adds OneTrust's consentId, null without a usable cookie; the digest is the same as with on", async () => {
    await post(stack, "/edge/api/v1/t", track(), { cookie: ANALYTICS_ONLY });
    let { receipt } = lastReceipt(stack);
    assert.deepEqual(Object.keys(receipt), [...KEYS, "consentId"]);
    assert.equal(receipt.consentId, CONSENT_ID);
    await post(stack, "/edge/api/v1/t", track());
    ({ receipt } = lastReceipt(stack));
    assert.equal(receipt.consentId, null);
    await post(stack, "/edge/api/v1/t", track(), { cookie: optanon("C0001:1", { consentId: "<script>" }) });
    assert.equal(lastReceipt(stack).receipt.consentId, null, "not an id");

    const plain = await startStack({ vars: VARS });
    try {
      await plain.cron();
      assert.equal(await digestOf(plain), await digestOf(stack), "RECEIPTS is not among the rules");
    } finally {
      await plain.dispose();
    }
  });
});

describe("MODE = integrations", () => {
  const stack = sharedStack({ ...VARS, MODE: "integrations" });

  test("the receipt is the only thing the edge writes in context.consent", async () => {
    const event = track();
    await post(stack, "/edge/api/v1/t", event, { cookie: ANALYTICS_ONLY });
    const { body } = lastReceipt(stack);
    assert.deepEqual(Object.keys(body.context.consent), ["receipt"]);
    assert.equal(body.context.consent.receipt.source, "choice");
    assert.deepEqual(body.context.page, event.context.page);
    assert.deepEqual(body.context.library, event.context.library);
    assert.equal(body.integrations["Google Analytics 4 Web"], true);
    const snapshot = await (await request(stack, `/edge/rules/${body.context.consent.receipt.rules}`)).json();
    assert.equal(snapshot.settings.MODE, "integrations");
  });
});

describe("CONSENT_MODEL = geo", () => {
  const stack = sharedStack({ ...VARS, CONSENT_MODEL: "geo" });

  test("the receipt names the country the geo model classified, as /consent's model says", async () => {
    const cases = [
      [{ cf: { country: "US" } }, "US", "opt-out"],
      [{ cf: { country: "XX" } }, null, "opt-in"],
      [{ cf: { country: "US" }, headers: { cookie: ANALYTICS_ONLY } }, "DE", "opt-in"], // the cookie's geolocation, DE;BE
      [{ cf: { country: "DE" }, headers: { cookie: optanon("C0001:1", { geolocation: "us;ca" }) } }, "US", "opt-out"],
    ];
    for (const [init, country, model] of cases) {
      const { body } = await getJson(stack, "/edge/consent", init);
      assert.equal(body.model, model, JSON.stringify(init));
      assert.equal(body.receipt.country, country, JSON.stringify(init));
      await request(stack, "/edge/api/v1/t", { ...init, method: "POST", headers: { authorization: AUTH, ...init.headers }, body: JSON.stringify(track()) });
      assert.deepEqual(lastReceipt(stack).receipt, body.receipt, JSON.stringify(init));
    }
  });
});

describe("an invalid RECEIPTS", () => {
  const stack = sharedStack({ ...VARS, RECEIPTS: "sometimes" });

  test("is reported by /healthz (503), locks consent down, and receipts stay on", async () => {
    const { res, body } = await getJson(stack, "/edge/healthz");
    assert.equal(res.status, 503);
    assert.deepEqual(body.configErrors.map((e) => e.key), ["RECEIPTS"]);
    await post(stack, "/edge/api/v1/t", track(), { cookie: ANALYTICS_ONLY });
    const sent = lastReceipt(stack);
    assert.equal(sent.body.integrations["Google Analytics 4 Web"], false, "locked down");
    assert.deepEqual(Object.keys(sent.receipt), KEYS, "on, without the id");
    const snapshot = await (await request(stack, `/edge/rules/${sent.receipt.rules}`)).json();
    assert.deepEqual(snapshot.configErrors, ["RECEIPTS"], "the snapshot says consent was locked down");
  });
});
