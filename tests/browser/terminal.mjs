// The trading page in a real Chromium (Debian's, driven by playwright-core; nothing is
// downloaded). Run by tests/browser.rs against a `serve` playing a crafted price recording:
// BTC at ~60 000 wiggling for 40 s, then 58 000 (through a 50x long's liquidation price).
// Env: HX_URL (the page), CHROMIUM (the executable), SCREENSHOT (where to save one).
import { chromium } from "playwright-core";

const url = process.env.HX_URL;
const step = (s) => console.log(`step: ${s}`);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const failures = [];
// bypassCSP: the page forbids eval, which playwright's waitForFunction needs (the test only).
const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error") console.log(`console: ${m.text()}`); });
const toastWith = (text) => page.locator(".toast", { hasText: text }).first().waitFor({ timeout: 30000 });

try {
  await page.goto(url);
  step("prices move");
  const bid = page.locator("#m-BTC_USDC .bid");
  await page.waitForFunction(() => document.querySelector("#m-BTC_USDC .bid")?.textContent.includes("."));
  const first = await bid.textContent();
  await page.waitForFunction((f) => document.querySelector("#m-BTC_USDC .bid").textContent !== f, first, { timeout: 10000 });
  await page.locator("#conn.on").waitFor();

  step("sign up");
  await page.fill("#email", `trader${Date.now()}@example.com`);
  await page.fill("#password", "correct horse battery");
  await page.click("#signup");
  await page.locator("#order").waitFor({ state: "visible", timeout: 20000 });
  await page.waitForFunction(() => document.querySelector("#b-available").textContent.includes("."));

  step("bad input shows the API's message");
  await page.fill("#size", "12.3.4");
  await page.click("#place");
  await page.locator(".toast.error").first().waitFor();
  const msg = await page.locator(".toast.error").first().textContent();
  if (!msg || msg.length < 5) failures.push(`error toast without a message: ${msg}`);

  step("open a 50x long");
  await page.locator("#leverage").fill("50");
  await page.fill("#size", "100");
  const liqEstimate = await page.locator("#e-liq").textContent();
  if (!/\d/.test(liqEstimate)) failures.push(`no liquidation estimate: ${liqEstimate}`);
  await page.click("#place");
  await toastWith("Opened");
  const row = page.locator("#positions tr").first();
  await row.waitFor();

  step("uPnL moves with the price");
  const upnl = row.locator(".upnl");
  const u0 = await upnl.textContent();
  await page.waitForFunction((u) => document.querySelector("#positions tr .upnl")?.textContent !== u, u0, { timeout: 15000 });

  step("partial close");
  page.once("dialog", (d) => d.accept("0.00050"));
  await row.locator("button", { hasText: "Part" }).click();
  await toastWith("Closed 0.00050");

  step("liquidation: toast, then Closed with the reason");
  await page.screenshot({ path: process.env.SCREENSHOT });
  await page.locator(".toast.liquidation").first().waitFor({ timeout: 60000 });
  await page.click("#tab-closed");
  await page.locator("#positions tr", { hasText: "liquidation" }).first().waitFor({ timeout: 10000 });
  const partial = await page.locator("#positions tr", { hasText: "manual" }).count();
  if (partial < 1) failures.push("the partial close is not under Closed");
} catch (e) {
  failures.push(String(e));
  await page.screenshot({ path: `${process.env.SCREENSHOT}.failed.png` }).catch(() => {});
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("browser test passed");
