// Debian's Chromium, driven by playwright-core, for the browser suites.
import { before, after } from "node:test";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
// Without the background-networking flags Chromium tries hosts this machine cannot reach.
const ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update", "--disable-sync", "--no-first-run"];

/** One browser for the file: launched before its tests, closed after. */
export function sharedBrowser() {
  const shared = {};
  before(async () => {
    shared.browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  });
  after(() => shared.browser?.close());
  return shared;
}

/**
 * Opens the e2e page (only `<script src="/edge/loader.js">`) in a fresh
 * context with the given cookie headers (`name=value`) and HTTP headers, and
 * waits for analytics.js to initialize.
 */
export async function openPage(browser, stack, { cookies = [], headers = {}, path = "/e2e.html" } = {}) {
  const context = await browser.newContext({ extraHTTPHeaders: headers });
  const parsed = cookies.map((header) => {
    const [name, ...value] = header.split("=");
    return { name, value: value.join("="), url: stack.url + "/" };
  });
  if (parsed.length) await context.addCookies(parsed);
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const started = Date.now();
  await page.goto(stack.url + path);
  await page.waitForFunction(() => window.analytics && window.analytics.initialized === true);
  return { context, page, errors, started };
}
