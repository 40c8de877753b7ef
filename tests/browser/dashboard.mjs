// Drives the dashboard of a running host in headless Chromium (Debian's, through
// playwright-core). host/tests/all/dashboard.rs runs it and changes the fake upstream between
// the steps this script announces on stdout ("step:NAME"); a failed check exits 1 saying what.
//
//   node dashboard.mjs <host base URL> <admin token> <screenshot path>

import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [base, token, screenshot] = process.argv.slice(2);
const WAIT_MS = 60_000;
const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();

function step(name) {
  console.log("step:" + name);
}

// Waits for the test to say it changed the upstream ("go").
async function go() {
  const { value, done } = await lines.next();
  if (done || value.trim() !== "go") throw new Error("the test stopped talking: " + value);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  const problems = [];
  page.on("pageerror", (error) => problems.push("page error: " + error.message));
  page.on("console", (message) => {
    // The 401 of /v1/dlq before the token is typed is expected (and shown on the page).
    if (message.type() === "error" && !message.text().includes("status of 401")) {
      problems.push("console: " + message.text());
    }
  });
  await page.goto(base + "/dashboard");
  // Without the token, dead letters (a /v1 read) are not shown.
  await page.getByTestId("connector-rss").waitFor({ timeout: WAIT_MS });
  await page.getByText("enter the admin token to see dead letters").waitFor({ timeout: WAIT_MS });
  await page.fill("#token", token);
  await page.press("#token", "Enter");
  await page.locator("#token").dispatchEvent("change");

  const state = page.getByTestId("breaker-api-state");
  await state.filter({ hasText: /^closed$/ }).waitFor({ timeout: WAIT_MS });
  step("closed-before");
  await go();

  // The upstream fails: the breaker turns open and says why.
  await state.filter({ hasText: /^open$/ }).waitFor({ timeout: WAIT_MS });
  const trip = await page.getByTestId("breaker-api-trip").textContent();
  if (!/calls failed \(\d+% ≥ 50%\)/.test(trip)) throw new Error("the trip does not say why: " + trip);
  const card = await page.getByTestId("breaker-api").textContent();
  if (!card.includes("next probe")) throw new Error("the open breaker does not say when it probes: " + card);
  step("open");
  await go();

  // The upstream recovers: a probe closes it.
  await state.filter({ hasText: /^closed$/ }).waitFor({ timeout: WAIT_MS });
  step("closed-after");

  // A dead letter, retried.
  const dead = page.locator("tr[data-testid^='dlq-target:']").first();
  await dead.waitFor({ timeout: WAIT_MS });
  const entry = (await dead.getAttribute("data-testid")).slice("dlq-".length);
  await page.getByTestId("retry-" + entry).click();
  await page.getByTestId("message").filter({ hasText: `retry ${entry}: done — 1 entry` })
    .waitFor({ timeout: WAIT_MS });
  console.log("retried:" + entry);

  // Reload, from the header.
  await page.getByTestId("reload-all").click();
  await page.getByTestId("message").filter({ hasText: /^reload: done/ }).waitFor({ timeout: WAIT_MS });
  step("reloaded");

  // The picture for the docs, once the dead letter is back (it is gone for good upstream).
  await page.locator("tr[data-testid^='dlq-target:']").first().waitFor({ timeout: WAIT_MS });
  await page.getByTestId("message").evaluate((message) => {
    message.textContent = "";
    message.className = "";
  });
  await page.screenshot({ path: screenshot, fullPage: true });
  if (problems.length) throw new Error(problems.join("\n"));
  step("done");
} catch (error) {
  console.log("failed:" + String(error.stack || error).replaceAll("\n", " | "));
  process.exitCode = 1;
} finally {
  await browser.close();
  input.close();
}
