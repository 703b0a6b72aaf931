// Helpers shared by the Worker-level test files.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { before, after, beforeEach } from "node:test";
import { startStack } from "../../dev/stack.mjs";

const template = readFileSync(new URL("../../static/loader.min.js", import.meta.url), "utf8");
const [templateHead, templateTail] = template.split("EDGE_DATA");

export const WK = "wk_test_1234567890";
export const OTHER_WK = "wk_other_0987654321";
export const AUTH = "Basic " + Buffer.from(WK + ":").toString("base64");

/** An OptanonConsent cookie as OneTrust writes it (fields encoded once). */
export function optanon(groups, extra = {}) {
  const fields = {
    isGpcEnabled: "0",
    datestamp: "Tue Nov 25 2026 10:00:00 GMT+0100 (Central European Standard Time)",
    version: "202409.1.0",
    browserGpcFlag: "0",
    isIABGlobal: "false",
    hosts: "",
    consentId: "6fcfe4fe-8de9-4101-bdf9-5dad0faf2611",
    interactionCount: "1",
    landingPath: "NotLandingPage",
    groups,
    geolocation: "DE;BE",
    AwaitingReconsent: "false",
    ...extra,
  };
  const value = Object.entries(fields)
    .map(([k, v]) => `${k}=${encodeURIComponent(v).replace(/%20/g, "+")}`)
    .join("&");
  return `OptanonConsent=${value}`;
}

export const ANALYTICS_ONLY = optanon("C0001:1,C0002:1,C0003:0,C0004:0,C0005:0");
export const EVERYTHING = optanon("C0001:1,C0002:1,C0003:1,C0004:1,C0005:1");

/** A request through the site to the Worker, with any headers and cf data. */
export async function request(stack, path, init = {}) {
  return stack.mf.dispatchFetch(new URL(path, stack.url).href, init);
}

export async function getJson(stack, path, init = {}) {
  const res = await request(stack, path, init);
  const body = await res.json();
  return { res, body };
}

/** The JSON data block the Worker injected into the loader. */
export function loaderBlock(js) {
  assert.ok(js.startsWith(templateHead) && js.endsWith(templateTail), "the loader is static/loader.min.js around its data");
  return js.slice(templateHead.length, js.length - templateTail.length);
}

export function loaderData(js) {
  return JSON.parse(loaderBlock(js));
}

export function track(extra = {}) {
  return {
    type: "track",
    event: "Order Completed",
    properties: { revenue: 42.5, currency: "EUR" },
    anonymousId: "anon-1",
    messageId: "msg-" + Math.random().toString(36).slice(2),
    writeKey: WK,
    context: { library: { name: "analytics.js", version: "next-1.84.3" }, page: { path: "/checkout" } },
    ...extra,
  };
}

export async function post(stack, path, body, headers = {}) {
  return request(stack, path, {
    method: "POST",
    headers: { "content-type": "text/plain", authorization: AUTH, ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** Waits until `check()` is truthy (background work such as waitUntil). */
export async function eventually(check, { timeoutMs = 5000, stepMs = 25 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/**
 * The stack a `describe` block shares: started (destination lists filled by
 * the cron trigger) before its tests, the fake Segment's log cleared before
 * each, stopped after. Use it like the stack itself once the tests run.
 */
export function sharedStack(vars, { cron = true, ...options } = {}) {
  const shared = {};
  before(async () => {
    Object.assign(shared, await startStack({ vars, ...options }));
    if (cron) await shared.cron();
  });
  after(() => shared.dispose());
  beforeEach(() => shared.segment.reset());
  return shared;
}

/**
 * Waits until the fake Segment has heard nothing for `quietMs`: a closed page's
 * posts already in the Worker (or sent with keepalive on pagehide) land now,
 * not in the next test's log.
 */
export async function settled(stack, { quietMs = 300, timeoutMs = 5000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let seen = -1;
  while (Date.now() < deadline && stack.segment.state.requests.length !== seen) {
    seen = stack.segment.state.requests.length;
    await new Promise((r) => setTimeout(r, quietMs));
  }
}

/** Every upstream POST the fake saw (failed ones included). */
export const upstreamPosts = (stack) => stack.segment.state.requests.filter((r) => r.method === "POST");
