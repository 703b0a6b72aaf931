// The pre-consent hold (DESIGN.md, "Before the visitor decides"): the real
// analytics-next in Chromium, the built Worker in workerd, and a stand-in
// OneTrust SDK (dev/fake-onetrust.js) that writes the cookies and fires the
// signals the way OneTrust does. Assertions are on what the fake Segment received.
import { test, describe, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { WK, EVERYTHING, eventually, sharedStack, getJson, settled } from "./support/helpers.mjs";
import { sharedBrowser } from "./support/browser.mjs";

const DESTINATIONS = ["Google Analytics 4 Web", "Actions Amplitude", "Facebook Pixel", "Google Ads Conversions", "Intercom Web (Actions)", "Twitter Ads", "Webhooks", "Homegrown Tool"];
const ALL_GROUPS_ON = DESTINATIONS.filter((d) => d !== "Homegrown Tool").sort();
const ANALYTICS_SCRIPT = "/next-integrations/actions/fake-analytics/a1b2c3.js";
const ADS_SCRIPT = "/next-integrations/actions/fake-ads/d4e5f6.js";
const STRICT_ONLY = { C0001: true, C0002: false, C0003: false, C0004: false, C0005: false };
const PREFERENCE_EVENT = "Segment Consent Preference Updated";

/** Per scenario: calls made, events received, timings. */
const report = [];
const chromium = sharedBrowser();
// A test's pages must not go on sending into the next test: closed, and their
// last posts landed, before the next test clears the log.
const contexts = [];
const closePages = async (stack) => {
  await Promise.all(contexts.splice(0).map((c) => c.close()));
  await settled(stack);
};
after(() => {
  if (report.length) console.log("\nhold scenario report\n" + report.map((r) => JSON.stringify(r)).join("\n"));
});

/**
 * Opens the hold page (stand-in OneTrust SDK, OptanonWrapper, the loader) in a
 * fresh context. Resolves once the loader has run; analytics.js may not be loaded.
 */
async function open(stack, { query = "", cookies = [] } = {}) {
  const context = await chromium.browser.newContext();
  contexts.push(context);
  if (cookies.length) {
    await context.addCookies(cookies.map((header) => {
      const [name, ...value] = header.split("=");
      return { name, value: value.join("="), url: stack.url + "/" };
    }));
  }
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const started = Date.now();
  await page.goto(stack.url + "/hold.html" + query);
  await page.waitForFunction(() => Array.isArray(window.analytics) || window.analytics?.initialized);
  return { context, page, errors, started };
}

/** Makes `calls` tracks (plus an identify) and returns their times in the page. */
async function fire(page, label, calls = 3) {
  return page.evaluate(({ label, calls }) => {
    const times = [];
    for (let i = 0; i < calls; i++) {
      times.push(Date.now());
      analytics.track(`${label} ${i}`, { i });
      if (i === 0) {
        times.push(Date.now());
        analytics.identify("user-" + label, { plan: "pro" });
      }
    }
    return times;
  }, { label, calls });
}

const events = (stack) => stack.segment.events();
const named = (stack, prefix) => events(stack).filter((e) => (e.event ?? "").startsWith(prefix));
const enabledIn = (e) => DESTINATIONS.filter((d) => e.integrations?.[d] === true).sort();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const trackingPosts = (stack) => stack.segment.state.posts.filter((p) => p.path !== "/v1/m");
const requested = (stack, path) => stack.segment.state.requests.some((r) => r.path === path);

/** Each messageId once; returns the events. */
function once(list) {
  const ids = list.map((e) => e.messageId);
  assert.equal(new Set(ids).size, ids.length, "each event once: " + JSON.stringify(ids));
  return list;
}

describe("pre-consent hold (default PRE_CONSENT_HOLD_MS)", () => {
  const stack = sharedStack({ WRITE_KEYS: WK });
  afterEach(() => closePages(stack));

  test("/consent: a new visitor is undecided and held; a decided one is not", async () => {
    const fresh = await getJson(stack, "/edge/consent");
    assert.equal(fresh.body.undecided, true);
    assert.equal(fresh.body.hold, true);
    const decided = await getJson(stack, "/edge/consent", { headers: { cookie: EVERYTHING } });
    assert.equal(decided.body.undecided, false);
    assert.equal(decided.body.hold, false);
  });

  test("accept after ~2 s: held events arrive once, granted, with their call times, in order; granted device-mode code loads in the page", async () => {
    const { context, page, errors, started } = await open(stack);
    const times = await fire(page, "Accept");
    await sleep(1800);
    assert.equal(trackingPosts(stack).length, 0, "nothing leaves while the visitor has not decided");
    assert.ok(!requested(stack, ANALYTICS_SCRIPT));
    const decidedAt = Date.now();
    await page.click("#onetrust-accept-btn-handler");
    const held = await eventually(() => named(stack, "Accept").length === 3 && events(stack).some((e) => e.type === "identify") && events(stack).some((e) => e.type === "page") && events(stack), { timeoutMs: 10_000 });
    await sleep(300); // anything sent twice would arrive by now
    const all = once(events(stack));
    const landing = all.filter((e) => e.event !== PREFERENCE_EVENT);
    assert.deepEqual(landing.map((e) => e.type).sort(), ["identify", "page", "track", "track", "track"]);
    for (const e of landing) {
      assert.deepEqual(enabledIn(e), ALL_GROUPS_ON, `${e.type} ${e.event ?? ""} is granted`);
      assert.equal(e.context.consent.categoryPreferences.C0004, true);
    }
    // The time of each call, not of the release.
    const tracks = [0, 1, 2].map((i) => held.find((e) => e.event === `Accept ${i}`));
    const callTimes = [times[0], times[2], times[3]];
    tracks.forEach((e, i) => {
      const skew = Math.abs(Date.parse(e.timestamp) - callTimes[i]);
      assert.ok(skew < 300, `Accept ${i}: timestamp ${e.timestamp} is ${skew} ms from its call`);
    });
    const identify = held.find((e) => e.type === "identify");
    assert.ok(Math.abs(Date.parse(identify.timestamp) - times[1]) < 300);
    assert.equal(identify.userId, "user-Accept");
    // In the order of the calls: page (the loader's), track 0, identify, track 1, track 2.
    // Their times never go backwards (calls in the same millisecond tie)...
    const callOrder = ["page", "Accept 0", "identify", "Accept 1", "Accept 2"];
    const inCallOrder = callOrder.map((name) => landing.find((e) => (e.event ?? e.type) === name));
    for (let i = 1; i < inCallOrder.length; i++) {
      assert.ok(Date.parse(inCallOrder[i].timestamp) >= Date.parse(inCallOrder[i - 1].timestamp), `${callOrder[i]} is not timed before ${callOrder[i - 1]}`);
    }
    assert.ok(Date.parse(held.find((e) => e.type === "page").timestamp) < decidedAt - 1500, "the landing page keeps its time");
    // Device mode: the granted destinations load in this page and get the held events.
    assert.ok(requested(stack, ANALYTICS_SCRIPT) && requested(stack, ADS_SCRIPT), "granted device-mode code is requested after the decision");
    const deviceMode = await eventually(() => page.evaluate(() => window.__deviceMode ?? []).then((d) => d.some((c) => c.event === "Accept 2") && d));
    // ...and the page's own destinations get them in that order.
    const ga4 = deviceMode.filter((c) => c.destination === "Google Analytics 4 Web" && c.event !== PREFERENCE_EVENT);
    assert.deepEqual(ga4.map((c) => c.event ?? c.type), callOrder, JSON.stringify(deviceMode));
    const preference = all.filter((e) => e.event === PREFERENCE_EVENT);
    assert.equal(preference.length, 1, "one consent preference event");
    assert.deepEqual(errors, []);
    const firstPost = Math.min(...trackingPosts(stack).map((p) => p.at));
    report.push({ scenario: "accept after 2 s", calls: 5, received: landing.length, releasedAfterDecisionMs: firstPost - decidedAt, landingPageAgeMs: firstPost - started });
    await context.close();
  });

  test("reject after ~2 s: the held events arrive once with the strict group only; no device-mode code", async () => {
    const { context, page } = await open(stack);
    await fire(page, "Reject");
    await sleep(1800);
    assert.equal(trackingPosts(stack).length, 0);
    await page.click("#onetrust-reject-all-handler");
    await eventually(() => named(stack, "Reject").length === 3 && events(stack).some((e) => e.type === "page"), { timeoutMs: 10_000 });
    await sleep(300);
    const landing = once(events(stack)).filter((e) => e.event !== PREFERENCE_EVENT);
    assert.equal(landing.length, 5);
    for (const e of landing) {
      assert.deepEqual(enabledIn(e), [], `${e.type}: nothing but Segment`);
      assert.equal(e.integrations["Segment.io"], true);
      assert.deepEqual(e.context.consent.categoryPreferences, STRICT_ONLY);
    }
    assert.ok(!stack.segment.state.requests.some((r) => r.path.startsWith("/next-integrations/")), "no device-mode code");
    report.push({ scenario: "reject after 2 s", calls: 5, received: landing.length });
    await context.close();
  });

  test("the page is left while undecided: the held events still arrive, once, with the strict group only", async () => {
    const { context, page } = await open(stack);
    const times = await fire(page, "Left");
    await sleep(300);
    assert.equal(trackingPosts(stack).length, 0);
    await page.goto("about:blank");
    const arrived = await eventually(() => named(stack, "Left").length === 3 && events(stack).some((e) => e.type === "page") && events(stack), { timeoutMs: 10_000 });
    await sleep(500);
    const landing = once(events(stack));
    assert.deepEqual(landing.map((e) => e.type).sort(), ["identify", "page", "track", "track", "track"]);
    for (const e of landing) {
      assert.deepEqual(enabledIn(e), [], e.type);
      assert.deepEqual(e.context.consent.categoryPreferences, STRICT_ONLY);
      assert.ok(e.anonymousId, "an anonymous id");
    }
    assert.equal(new Set(landing.map((e) => e.anonymousId)).size, 1, "one visitor");
    assert.equal(arrived.find((e) => e.event === "Left 0").userId, undefined, "identify comes after Left 0");
    assert.equal(arrived.find((e) => e.event === "Left 1").userId, "user-Left");
    assert.ok(Math.abs(Date.parse(arrived.find((e) => e.event === "Left 0").timestamp) - times[0]) < 300);
    assert.ok(trackingPosts(stack).every((p) => p.path === "/v1/b"), "sent as a batch by the page on its way out");
    report.push({ scenario: "left while undecided", calls: 5, received: landing.length });
    await context.close();
  });

  test("OneTrust shows no banner to this visitor: no hold, the first event as fast as a decided visitor's", async () => {
    const firstEvent = async (options, label) => {
      stack.segment.reset();
      const { context, page, started } = await open(stack, options);
      await fire(page, label, 1);
      await eventually(() => named(stack, label).length === 1, { timeoutMs: 10_000 });
      const ms = Math.min(...trackingPosts(stack).map((p) => p.at)) - started;
      const got = named(stack, label)[0];
      await context.close();
      await settled(stack);
      return { ms, got };
    };
    // Alternate to share the machine's noise; keep each one's best.
    const noBanner = [];
    const decided = [];
    for (let round = 0; round < 3; round++) {
      noBanner.push(await firstEvent({ query: "?banner=0" }, "NoBanner"));
      decided.push(await firstEvent({ query: "?banner=0", cookies: [EVERYTHING] }, "Decided"));
    }
    const best = (runs) => Math.min(...runs.map((r) => r.ms));
    // The stand-in SDK answers 50 ms after the page loads, as a cached real one would.
    assert.ok(best(noBanner) <= best(decided) + 250, `no banner ${best(noBanner)} ms vs decided ${best(decided)} ms`);
    assert.ok(best(noBanner) < 2000, "released long before the limit");
    // OneTrust granted the groups (implied consent): the events carry them.
    assert.equal(noBanner[0].got.context.consent.categoryPreferences.C0002, true);
    report.push({ scenario: "no banner vs decided", firstEventMs: { noBanner: noBanner.map((r) => r.ms), decided: decided.map((r) => r.ms) } });
  });

  test("a page that redefines OptanonWrapper after the loader, and no OneTrustGroupsUpdated: the decision still ends the hold", async () => {
    const { page } = await open(stack, { query: "?groupsEvent=0&sdkDelay=300" });
    await page.evaluate(() => { window.OptanonWrapper = function () {}; });
    await fire(page, "Late", 1);
    await sleep(1200);
    assert.equal(trackingPosts(stack).length, 0, "still holding");
    await page.click("#onetrust-accept-btn-handler");
    await eventually(() => named(stack, "Late").length === 1, { timeoutMs: 5000 });
    assert.deepEqual(enabledIn(named(stack, "Late")[0]), ALL_GROUPS_ON);
    // And OneTrust's word that it shows no banner, read from its SDK.
    stack.segment.reset();
    const quiet = await open(stack, { query: "?banner=0&groupsEvent=0&sdkDelay=300" });
    await quiet.page.evaluate(() => { window.OptanonWrapper = function () {}; });
    await fire(quiet.page, "Quiet", 1);
    await eventually(() => named(stack, "Quiet").length === 1, { timeoutMs: 4000 });
  });

  test("a decided visitor: no hold, nothing waits for OneTrust", async () => {
    // OneTrust's SDK takes 5 s to answer here: a decided visitor must not notice.
    const { page, started } = await open(stack, { query: "?sdkDelay=5000", cookies: [EVERYTHING] });
    assert.equal(await page.evaluate(() => !!document.querySelector("link[rel=preload]")), false, "no hold, nothing preloaded");
    await fire(page, "Decided", 1);
    await eventually(() => named(stack, "Decided").length === 1, { timeoutMs: 4000 });
    const firstPost = Math.min(...trackingPosts(stack).map((p) => p.at));
    assert.ok(firstPost - started < 4000, `sent before OneTrust answered (${firstPost - started} ms)`);
    assert.deepEqual(enabledIn(named(stack, "Decided")[0]), ALL_GROUPS_ON);
    report.push({ scenario: "decided visitor, slow OneTrust", firstEventMs: firstPost - started });
  });

  test("more than 100 calls while holding: the 101st ends the hold and none is lost", async () => {
    const { context, page } = await open(stack);
    const count = 150;
    await page.evaluate((n) => {
      for (let i = 0; i < n; i++) analytics.track("Burst " + i, { i });
    }, count);
    const burst = await eventually(() => {
      const got = named(stack, "Burst ");
      return got.length >= count && got;
    }, { timeoutMs: 30_000 });
    await sleep(500);
    once(events(stack));
    assert.equal(named(stack, "Burst ").length, count);
    assert.deepEqual(burst.map((e) => e.properties.i).sort((a, b) => a - b), [...Array(count).keys()]);
    const byTime = [...burst].sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
    for (let i = 1; i < byTime.length; i++) assert.ok(byTime[i].properties.i > byTime[i - 1].properties.i || byTime[i].timestamp === byTime[i - 1].timestamp, "call order kept in time");
    for (const e of burst) assert.deepEqual(e.context.consent.categoryPreferences, STRICT_ONLY);
    report.push({ scenario: "150 calls while holding", calls: count + 1, received: burst.length + events(stack).filter((e) => e.type === "page").length });
    await context.close();
  });
});

describe("pre-consent hold with a short limit (PRE_CONSENT_HOLD_MS=1500)", () => {
  const stack = sharedStack({ WRITE_KEYS: WK, PRE_CONSENT_HOLD_MS: "1500" });
  afterEach(() => closePages(stack));

  test("a banner that never answers: released after the limit, strict only, none lost", async () => {
    const { context, page, started } = await open(stack);
    await fire(page, "Unanswered");
    await sleep(1000);
    assert.equal(trackingPosts(stack).length, 0, "held until the limit");
    await eventually(() => named(stack, "Unanswered").length === 3 && events(stack).some((e) => e.type === "page"), { timeoutMs: 10_000 });
    await sleep(300);
    const landing = once(events(stack));
    assert.equal(landing.length, 5);
    for (const e of landing) assert.deepEqual(e.context.consent.categoryPreferences, STRICT_ONLY);
    const firstPost = Math.min(...trackingPosts(stack).map((p) => p.at));
    assert.ok(firstPost - started >= 1500, `released after the limit (${firstPost - started} ms)`);
    report.push({ scenario: "banner never answers (1.5 s limit)", calls: 5, received: landing.length, firstEventMs: firstPost - started });
    await context.close();
  });
});

describe("pre-consent hold off (PRE_CONSENT_HOLD_MS=0): today's behaviour", () => {
  const stack = sharedStack({ WRITE_KEYS: WK, PRE_CONSENT_HOLD_MS: "0" });
  afterEach(() => closePages(stack));

  test("an undecided visitor's events leave at once with the strict group; a later grant applies to later events", async () => {
    const consent = await getJson(stack, "/edge/consent");
    assert.deepEqual([consent.body.undecided, consent.body.hold], [true, false]);
    const { context, page, started } = await open(stack);
    await fire(page, "Off");
    await eventually(() => named(stack, "Off").length === 3, { timeoutMs: 10_000 });
    const firstPost = Math.min(...trackingPosts(stack).map((p) => p.at));
    for (const e of named(stack, "Off")) assert.deepEqual(e.context.consent.categoryPreferences, STRICT_ONLY);
    await page.click("#onetrust-accept-btn-handler");
    await page.waitForFunction(() => document.cookie.includes("OptanonAlertBoxClosed"));
    await sleep(200);
    await page.evaluate(() => analytics.track("After Accept"));
    const [later] = await eventually(() => named(stack, "After Accept").length && named(stack, "After Accept"));
    assert.equal(later.context.consent.categoryPreferences.C0002, true);
    assert.ok(!requested(stack, ADS_SCRIPT), "device mode chosen at load, as before the hold existed");
    report.push({ scenario: "hold off", firstEventMs: firstPost - started });
    await context.close();
  });
});
