// The operator page in headless Chromium (Debian's, driven by playwright-core): it loads, takes an
// API key, lists the seeded conversation, opens it with its delivery ticks, shows the bulk job's
// progress bar and the dead-letter counts; a screenshot is written for CI to keep.
//   node operator_page.cjs <node_modules> <page url> <api key> <conversation key> <its last text> <screenshot.png>
"use strict";
const [modules, url, key, conversation, last, screenshot] = process.argv.slice(2);
const { chromium } = require(modules + "/playwright-core");

function check(ok, what) {
  if (!ok) {
    throw new Error("operator page: " + what);
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.WAFLEET_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const response = await page.goto(url);
    check(response.status() === 200, "GET / answered " + response.status());
    check((await page.title()) === "wafleet operator", "the title is " + (await page.title()));
    await page.fill("#key", key);
    await page.click("#login button");
    const item = page.locator(`#conversations li[data-key="${conversation}"]`);
    await item.waitFor({ timeout: 15000 });
    check((await item.innerText()).includes(last), "the conversation's last message '" + last + "' is not shown: " +
          (await item.innerText()));
    await item.click();
    const read = page.locator("#messages .msg.out .ticks.read");
    await read.first().waitFor({ timeout: 15000 });
    const messages = await page.locator("#messages .msg").count();
    check(messages >= 2, "the conversation shows " + messages + " messages");
    const job = page.locator("#jobs li[data-job]");
    await job.first().waitFor({ timeout: 15000 });
    check((await job.first().locator(".bar").count()) === 1, "the bulk job has no progress bar");
    const dlq = page.locator('#dlq li[data-topic="wa.dlq"] .num');
    await dlq.waitFor({ timeout: 15000 });
    check(/^\d+$/.test((await dlq.innerText()).trim()), "no dead-letter count");
    check(errors.length === 0, "script errors: " + errors.join("; "));
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log("operator page: OK, " + messages + " messages shown; screenshot " + screenshot);
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
