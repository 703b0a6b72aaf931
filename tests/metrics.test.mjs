// Per-key consent metrics (issue 19): the data points the built Worker writes
// to its Analytics Engine dataset, recorded by the stand-in in
// dev/metrics-recorder.mjs (Miniflare's own local dataset discards them).
import { test, describe, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { startStack } from "../dev/stack.mjs";
import { WK, OTHER_WK, ANALYTICS_ONLY, request, getJson, track, post, eventually } from "./support/helpers.mjs";

const VARS = { WRITE_KEYS: `${WK},${OTHER_WK}` };
const INDEX = WK.slice(0, 6) + "…";
const SENTINEL = OTHER_WK.slice(0, 6) + "…";

/** A stack with the given dataset, its lists refreshed, its records cleared before each test. */
function stackWith(metrics, vars = VARS, options = {}) {
  const shared = {};
  before(async () => {
    Object.assign(shared, await startStack({ vars, metrics, ...options }));
    await shared.cron();
  });
  after(() => shared.dispose());
  beforeEach(() => {
    shared.segment.reset();
    shared.points?.splice(0);
    shared.logs?.splice(0);
  });
  return shared;
}

/**
 * The points written while `act` ran. A loader for the other write key
 * follows it: log lines arrive in order, so once its point is in, every
 * earlier one is.
 */
async function pointsOf(stack, act) {
  stack.points.splice(0);
  await act();
  const res = await request(stack, `/edge/loader.js?wk=${OTHER_WK}`);
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  const at = await eventually(() => stack.points.findIndex((p) => p.indexes[0] === SENTINEL) + 1);
  return stack.points.slice(0, at - 1);
}

const point = (blobs, doubles) => ({ indexes: [INDEX], blobs, doubles });

describe("metrics: tracking posts and loaders", () => {
  const stack = stackWith("record");

  test("a granted single event: one point, everything forwarded", async () => {
    const points = await pointsOf(stack, async () => {
      const res = await post(stack, "/edge/api/v1/t", track(), { cookie: ANALYTICS_ONLY });
      assert.equal(res.status, 200);
    });
    assert.deepEqual(points, [point(["track", "choice", "no-gpc", "n/a", "no-hold"], [1, 1, 0, 0, 0])]);
  });

  test("a tampered event: its grants the cookie does not back are counted as corrected", async () => {
    const event = track({
      integrations: { All: true, "Google Analytics 4 Web": true, "Facebook Pixel": { pixelId: "x" }, "Made Up": true, "Segment.io": true },
      context: { consent: { categoryPreferences: { C0004: true } } },
    });
    const points = await pointsOf(stack, async () => {
      const res = await post(stack, "/edge/api/v1/page", event, { cookie: ANALYTICS_ONLY, "sec-gpc": "1" });
      assert.equal(res.status, 200);
    });
    // Facebook Pixel (C0004 refused) and Made Up (not on the list, ALL_DEFAULT
    // false); GA4 is granted; All and Segment.io are not destinations.
    assert.deepEqual(points, [point(["page", "choice", "gpc", "n/a", "no-hold"], [1, 1, 0, 2, 0])]);
    assert.equal(stack.segment.state.posts[0].body.integrations["Facebook Pixel"], false);
  });

  test("a mixed batch is one point summing its events", async () => {
    const body = {
      writeKey: WK,
      batch: [
        track({ messageId: "plain" }),
        track({ messageId: "dropped", integrations: { "Segment.io": false, "Facebook Pixel": true } }),
        track({ messageId: "refuses-analytics", context: { consent: { categoryPreferences: { C0002: false } } } }),
        track({ messageId: "tampered", integrations: { "Twitter Ads": true, Webhooks: false } }),
      ],
    };
    const points = await pointsOf(stack, async () => {
      const res = await post(stack, "/edge/api/v1/batch", body, { cookie: ANALYTICS_ONLY });
      assert.equal(res.headers.get("x-consent-forwarded"), "3");
      assert.equal(res.headers.get("x-consent-dropped"), "1");
    });
    // Corrected: Twitter Ads. Kept: C0002 (granted by the cookie) and
    // Webhooks (Raw Data → C0002, granted). The dropped event counts only as dropped.
    assert.deepEqual(points, [point(["batch", "choice", "no-gpc", "n/a", "no-hold"], [4, 3, 1, 1, 2])]);
  });

  test("a loader served is one point with the consent rate, memoized or not", async () => {
    const points = await pointsOf(stack, async () => {
      for (const headers of [{}, {}, { cookie: ANALYTICS_ONLY }]) {
        const res = await request(stack, "/edge/loader.js", { headers });
        assert.equal(res.status, 200);
        await res.text();
      }
    });
    const undecided = point(["loader", "default", "no-gpc", "n/a", "hold"], [1, 0, 8, 1]);
    assert.deepEqual(points, [undecided, undecided, point(["loader", "choice", "no-gpc", "n/a", "no-hold"], [1, 3, 8, 1])]);
  });

  test("no point for what is not a tracking call of a served key", async () => {
    const points = await pointsOf(stack, async () => {
      assert.equal((await post(stack, "/edge/api/v1/m", { series: [] }, { authorization: "" })).status, 200);
      assert.equal((await post(stack, "/edge/api/v1/t", track({ writeKey: "stranger" }), { authorization: "" })).status, 403);
      assert.equal((await post(stack, "/edge/api/v1/t", "{not json")).status, 400);
      assert.equal((await request(stack, "/edge/consent")).status, 200);
      assert.equal((await request(stack, "/edge/loader.js?wk=stranger")).status, 404);
    });
    assert.deepEqual(points, []);
  });

  test("no field holds the write key, a cookie value or an id", async () => {
    const points = await pointsOf(stack, () => post(stack, "/edge/api/v1/t", track({ userId: "user-42" }), { cookie: ANALYTICS_ONLY, "cf-connecting-ip": "203.0.113.7" }));
    const text = JSON.stringify(points);
    for (const secret of [WK, "anon-1", "user-42", "203.0.113.7", "6fcfe4fe", "C0002"]) assert.ok(!text.includes(secret), secret);
  });

  test("healthz says metrics are on", async () => {
    const { body } = await getJson(stack, "/edge/healthz");
    assert.equal(body.metrics, true);
  });

  test("nothing is logged per request", () => {
    assert.deepEqual(stack.logs.filter((l) => l.message.includes("consent-edge") || l.message.includes('"event"')), []);
  });
});

describe("metrics: refused collection and regions", () => {
  const stack = stackWith("record", { ...VARS, COLLECTION_GROUP: "C0002", CONSENT_MODEL: "geo" });

  test("an event whose collection is refused is counted as dropped", async () => {
    const points = await pointsOf(stack, async () => {
      const res = await post(stack, "/edge/api/v1/t", track({ integrations: { "Facebook Pixel": true } }));
      assert.equal(res.headers.get("x-consent-dropped"), "1");
    });
    assert.deepEqual(points, [point(["track", "default", "no-gpc", "opt-in", "hold"], [1, 0, 1, 0, 0])]);
    assert.deepEqual(stack.segment.state.posts, []);
  });

  test("the geo model's country class, and an opt-out region's collection", async () => {
    const points = await pointsOf(stack, async () => {
      await post(stack, "/edge/api/v1/t", track(), {}).then((r) => r.arrayBuffer());
      const us = await stack.mf.dispatchFetch(`${stack.url}/edge/api/v1/t`, {
        method: "POST",
        headers: { "content-type": "text/plain", authorization: "Basic " + Buffer.from(WK + ":").toString("base64") },
        body: JSON.stringify(track()),
        cf: { country: "US" },
      });
      assert.equal(us.headers.get("x-consent-forwarded"), "1");
    });
    assert.deepEqual(
      points.map((p) => [p.blobs[3], p.doubles[1], p.doubles[2]]),
      [
        ["opt-in", 0, 1],
        ["opt-out", 1, 0],
      ],
    );
  });
});

describe("metrics: no binding", () => {
  const stack = stackWith(undefined, VARS, { captureLogs: true });

  test("nothing is written, nothing fails, healthz says off", async () => {
    const res = await post(stack, "/edge/api/v1/t", track(), { cookie: ANALYTICS_ONLY });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-consent-forwarded"), "1");
    assert.equal((await request(stack, "/edge/loader.js")).status, 200);
    const { body } = await getJson(stack, "/edge/healthz");
    assert.equal(body.metrics, false);
    assert.deepEqual(stack.points, []);
    assert.deepEqual(stack.logs.filter((l) => l.message.includes("metrics")), []);
  });
});

describe("metrics: a binding that throws", () => {
  const stack = stackWith("throw");

  test("requests still succeed; the error is logged once, not per request", async () => {
    for (let i = 0; i < 3; i++) {
      const res = await post(stack, "/edge/api/v1/t", track(), { cookie: ANALYTICS_ONLY });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-consent-forwarded"), "1");
      const loader = await request(stack, "/edge/loader.js");
      assert.equal(loader.status, 200);
      await loader.text();
    }
    assert.equal(stack.segment.state.posts.length, 3);
    const { body } = await getJson(stack, "/edge/healthz");
    assert.equal(body.metrics, true, "bound, even if failing");
    const errors = await eventually(() => {
      const found = stack.logs.filter((l) => l.message.includes("metrics.error"));
      return found.length && found;
    });
    // Give a second line time to show up, were there one.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(stack.logs.filter((l) => l.message.includes("metrics.error")).length, 1);
    const line = JSON.parse(errors[0].message);
    assert.equal(line.subject, "CONSENT_METRICS");
    assert.match(line.message, /unavailable/);
    assert.equal(errors[0].level, "error");
  });
});
