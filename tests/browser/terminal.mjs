// The trading page in a real Chromium (Debian's, driven by playwright-core; nothing is
// downloaded). Run by tests/browser.rs against a `serve` playing a crafted price recording:
// BTC at ~60 000 wiggling for 40 s, then 59 170 for 40 s (a 50x long's margin call), then
// 58 000 (through its liquidation price).
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

  step("margin mode: cross shows the account's level; isolated again");
  await page.selectOption("#b-mode", "cross");
  await toastWith("Margin mode: cross");
  await page.locator("#b-level-box").waitFor({ state: "visible" });
  const lvl = await page.locator("#b-level").textContent();
  if (!/stop-out 1\.000000/.test(lvl)) failures.push(`no stop-out level shown: ${lvl}`);
  await page.selectOption("#b-mode", "isolated");
  await toastWith("Margin mode: isolated");
  await page.locator("#b-level-box").waitFor({ state: "hidden" });

  step("position mode: netting, then hedging again");
  await page.selectOption("#b-pmode", "netting");
  await toastWith("Position mode: netting");
  await page.selectOption("#b-pmode", "hedging");
  await toastWith("Position mode: hedging");

  step("API keys: add one by its public key, see it, revoke it");
  await page.click("#keys-open");
  await page.fill("#key-public", "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=");
  await page.check("#key-trade");
  await page.click("#key-add");
  await toastWith("added: read, trade");
  await page.locator("#keys-list tr", { hasText: "read trade" }).waitFor();
  await page.click("#keys-list .key-revoke");
  await toastWith("revoked");
  await page.locator("#keys-list tr").waitFor({ state: "detached" });
  await page.click("#keys-form button[value=cancel]");

  step("sessions: this one is listed; the password changes, this session stays");
  await page.click("#sessions-open");
  await page.locator("#sessions-list tr", { hasText: "this one" }).waitFor();
  await page.fill("#password-current", "correct horse battery");
  await page.fill("#password-new", "battery horse correct 2");
  await page.click("#password-change");
  await toastWith("Password changed");
  await page.locator("#sessions-list tr", { hasText: "this one" }).waitFor();
  await page.click("#password-form button[value=cancel]");

  step("two-factor: turning it on shows a QR code and ten recovery codes; a wrong code is refused");
  await page.click("#tfa-open");
  await page.click("#tfa-start");
  await page.locator("#tfa-qr").waitFor({ state: "visible" });
  const codes = (await page.locator("#tfa-codes").textContent()).trim().split(/\s+/);
  if (codes.length !== 10) failures.push(`recovery codes: ${codes.length}`);
  const qr = await page.locator("#tfa-qr").evaluate((img) => img.naturalWidth);
  if (!(qr > 0)) failures.push("the QR code did not render");
  await page.fill("#tfa-code", "000000");
  await page.click("#tfa-confirm");
  await page.locator(".toast.error", { hasText: "code" }).first().waitFor();
  await page.click("#tfa form button[value=cancel]");

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
  // The account type's charges before opening (the default group: none).
  const charges = await page.locator("#e-charges").textContent();
  if (!/^0\.00 \(default\)$/.test(charges)) failures.push(`no group charges shown: ${charges}`);
  // Without markup, the trader's price is the fill price.
  const quote = await page.locator("#e-quote").textContent();
  const fill = await page.locator("#e-price").textContent();
  if (quote !== fill) failures.push(`your price ${quote} is not the fill price ${fill}`);
  // The order's leverage bracket: 5 000 of notional is in the first (100x); 50 000 in the
  // second (50x), where 60x is too much.
  const bracketOf = async (size, lev) => {
    await page.fill("#size", size);
    await page.locator("#leverage").fill(lev);
    return page.locator("#e-bracket").textContent();
  };
  const small = await bracketOf("100", "50");
  if (small !== "up to 100x") failures.push(`bracket of 5 000 at 50x: ${small}`);
  const big = await bracketOf("1000", "50");
  if (big !== "up to 50x") failures.push(`bracket of 50 000 at 50x: ${big}`);
  const over = await bracketOf("1000", "60");
  if (over !== "above this size's 50x") failures.push(`bracket of 60 000 at 60x: ${over}`);
  await bracketOf("100", "50");
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

  step("edit TP/SL");
  await row.locator("button", { hasText: "TP/SL" }).click();
  await page.fill("#tr-tp", "70000");
  await page.fill("#tr-sl", "50000");
  await page.fill("#tr-trail", "5%");
  await page.click("#triggers-save");
  await toastWith("TP 70000.00, SL 50000.00, trailing stop at");
  await page.locator("#positions tr .trail", { hasText: "." }).first().waitFor();
  await page.locator("#positions tr .tp", { hasText: "70000.00" }).first().waitFor();
  await page.locator("#positions tr .sl", { hasText: "50000.00" }).first().waitFor();

  step("the margin mode cannot change with a position open");
  await page.selectOption("#b-mode", "cross");
  await toastWith("close your positions");
  if ((await page.locator("#b-mode").inputValue()) !== "isolated") failures.push("the mode did not go back to isolated");

  step("withdraw");
  const available = async () => Number((await page.locator("#b-available").textContent()).trim());
  const before = await available();
  await page.click("#withdraw-open");
  await page.fill("#withdraw-amount", "100");
  await page.click("#withdraw-send");
  await toastWith("Withdrew 100");
  const after = await available();
  if (Math.abs(before - after - 100) > 1e-9) failures.push(`available ${before} -> ${after} after withdrawing 100`);

  step("place and cancel a limit order");
  await page.selectOption("#order-type", "limit");
  await page.locator("#price-box").waitFor({ state: "visible" });
  await page.fill("#order-price", "55000");
  await page.fill("#size", "0.001");
  await page.selectOption("#size-kind", "quantity");
  await page.locator("#leverage").fill("10");
  await page.click("#place");
  await toastWith("Placed limit long BTC_USDC at 55000.00");
  await page.waitForFunction(() => document.querySelector("#b-orders").textContent.trim() === "5.500000");
  await page.click("#tab-orders");
  const orderRow = page.locator("#positions tr", { hasText: "55000.00" }).first();
  await orderRow.waitFor();
  await orderRow.locator("button", { hasText: "Cancel" }).click();
  await toastWith("Cancelled order");
  await page.waitForFunction(() => !document.querySelector("#positions").textContent.includes("55000.00"));
  await page.waitForFunction(() => document.querySelector("#b-orders").textContent.trim() === "0.000000");
  await page.click("#tab-open");

  step("margin call: a toast that stays");
  await page.locator(".toast.margin-call").first().waitFor({ timeout: 60000 });

  step("liquidation: toast, then Closed with the reason");
  await page.screenshot({ path: process.env.SCREENSHOT });
  await page.locator(".toast.liquidation").first().waitFor({ timeout: 60000 });
  await page.click("#tab-closed");
  await page.locator("#positions tr", { hasText: "liquidation" }).first().waitFor({ timeout: 10000 });

  step("why: the liquidation explained");
  await page.locator("#positions tr", { hasText: "liquidation" }).first().locator("button", { hasText: "Why?" }).click();
  await page.locator("#why[open]").waitFor();
  const why = await page.locator("#why-text").textContent();
  if (!/liquidation at .*journal seq \d+/.test(why) || !/level /.test(why) || !/hundredx explain/.test(why)) failures.push(`no explanation: ${why}`);
  await page.click("#why button");
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
