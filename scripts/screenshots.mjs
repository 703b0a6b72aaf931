// `make screenshots`: the demo page as README shows it, in Debian's Chromium
// against the local stack. Writes docs/hold.png (a new visitor, held while the
// banner waits) and docs/demo.png (after the decision released the events).
// Not part of `make test`: a test run leaves the checkout as it found it.
import { chromium } from "playwright-core";
import { join } from "node:path";
import { startStack, root } from "../dev/stack.mjs";

const stack = await startStack({ vars: { WRITE_KEYS: process.env.WRITE_KEYS || "demo_write_key" } });
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
try {
  await stack.cron();
  const page = await (await browser.newContext({ viewport: { width: 1240, height: 900 } })).newPage();
  await page.goto(stack.url + "/");
  await page.waitForSelector("#destinations tbody tr");
  await page.waitForSelector("#onetrust-banner-sdk");
  await page.click("[data-call=track]");
  await page.click("[data-call=identify]");
  await page.screenshot({ path: join(root, "docs", "hold.png") });
  await page.waitForTimeout(2000); // the visitor reads the banner
  await page.click("#onetrust-accept-btn-handler");
  await page.waitForFunction(() => document.querySelector("#hold").textContent.includes("Released"));
  await page.click("[data-call=tamper]");
  await page.waitForFunction(() => document.querySelectorAll("#received tbody tr").length >= 5, null, { timeout: 10_000 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(root, "docs", "demo.png"), fullPage: true });
  console.log("wrote docs/hold.png and docs/demo.png");
} finally {
  await browser.close();
  await stack.dispose();
}
