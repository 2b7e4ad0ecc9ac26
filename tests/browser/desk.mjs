// The operator console (/admin) in a real Chromium (Debian's, driven by playwright-core).
// Run by tests/browser.rs against a `serve` on the synthetic feed where OPS_EMAIL holds the
// operator role and TRADER_EMAIL has a 50x long open.
// Env: HX_URL (the console), CHROMIUM, SCREENSHOT, OPS_EMAIL, TRADER_EMAIL, PASSWORD.
import { chromium } from "playwright-core";

const url = process.env.HX_URL;
const step = (s) => console.log(`step: ${s}`);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const failures = [];
// bypassCSP: the page forbids eval, which playwright's waitForFunction needs (the test only).
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, bypassCSP: true });
page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error") console.log(`console: ${m.text()}`); });
page.on("dialog", (d) => d.accept());
const toastWith = (text) => page.locator(".toast", { hasText: text }).first().waitFor({ timeout: 30000 });
const signIn = async (email) => {
  await page.fill("#email", email);
  await page.fill("#password", process.env.PASSWORD);
  await page.click("#signin");
};

try {
  await page.goto(url);
  step("a trader cannot use the desk");
  await signIn(process.env.TRADER_EMAIL);
  await toastWith("does not hold the operator role");
  if (await page.locator("#desk").isVisible()) failures.push("the desk opened for a trader");

  step("the operator signs in: live prices and the house's book by push");
  await signIn(process.env.OPS_EMAIL);
  await page.locator("#desk").waitFor({ state: "visible", timeout: 20000 });
  await page.locator("#conn.on").waitFor();
  await page.waitForFunction(() => document.querySelector("#m-BTC_USDC .bid")?.textContent.includes("."));
  const first = await page.locator("#m-BTC_USDC .bid").textContent();
  await page.waitForFunction((f) => document.querySelector("#m-BTC_USDC .bid").textContent !== f, first, { timeout: 15000 });
  await page.waitForFunction(() => document.querySelector("#l-open").textContent === "1", null, { timeout: 15000 });
  await page.locator("#book tr.long", { hasText: "BTC_USDC" }).first().waitFor();
  await page.locator("#at-risk tr", { hasText: "BTC_USDC" }).first().waitFor();

  step("every client group's terms");
  await page.locator("#groups tr", { hasText: "default" }).first().waitFor();

  step("B-book figures by push; no hedger linked: everything is B-book");
  await page.locator("#books dt", { hasText: "B-book open result" }).waitFor();
  await page.locator("#hedge-state", { hasText: "No hedger linked" }).waitFor();

  step("open the trader's account");
  await page.fill("#who", process.env.TRADER_EMAIL);
  await page.click("#find button");
  await page.locator("#account").waitFor({ state: "visible" });
  await page.locator("#acct-facts dd.status-active").waitFor();
  await page.locator("#acct-positions tr", { hasText: "BTC_USDC" }).waitFor();

  step("pay it 25.50 with a reason; then suspend it");
  await page.selectOption("#act-action", "adjust_balance");
  await page.fill("#act-amount", "25.50");
  await page.fill("#act-reason", "goodwill, ticket 12");
  await page.click("#act-go");
  await toastWith("adjust balance done");
  await page.selectOption("#act-action", "suspend");
  await page.fill("#act-reason", "chargeback review");
  await page.click("#act-go");
  await toastWith("status suspended");
  await page.locator("#acct-facts dd.status-suspended").waitFor();

  step("the audit log shows who did what and why");
  await page.locator("#audit tr", { hasText: "chargeback review" }).waitFor({ timeout: 15000 });
  await page.locator("#audit tr", { hasText: "goodwill, ticket 12" }).waitFor();

  step("today's report shows the payment");
  await page.click("#report-form button[type=submit]");
  await page.locator("#report tr", { hasText: "-25.500000" }).waitFor({ timeout: 15000 });

  step("stress: a 10 % gap on a copy of the book liquidates the 50x long");
  await page.locator("#stress-scenario option[value=gap-10]").waitFor({ state: "attached" });
  await page.selectOption("#stress-scenario", "gap-10");
  await page.click("#stress-go");
  await page.locator("#stress-closed tr", { hasText: "liquidated" }).filter({ hasText: "BTC_USDC" }).waitFor({ timeout: 30000 });
  await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  // Nothing touched: the live book still holds the position.
  if ((await page.locator("#l-open").textContent()) !== "1") failures.push("the stress run touched the live book");

  step("reinstate");
  await page.selectOption("#act-action", "reinstate");
  await page.fill("#act-reason", "review closed");
  await page.click("#act-go");
  await page.locator("#acct-facts dd.status-active").waitFor();
} catch (e) {
  failures.push(String(e));
  await page.screenshot({ path: `${process.env.SCREENSHOT}.failed.png`, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("console test passed");
