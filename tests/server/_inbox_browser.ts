/**
 * Chromium helpers for inbox tests: Debian's `chromium` driven by
 * `playwright-core` (no browser download), a page that records dialogs and
 * Content-Security-Policy violations, and the sign-in steps. A black-box test
 * of a real `plm serve` process can use them with its own base URL.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
];
/** Every browser step's timeout. */
export const STEP_TIMEOUT_MS = 10_000;

/** Launches Chromium, runs `fn`, and always closes the browser. */
export async function withChromium<T>(fn: (browser: Browser) => Promise<T>): Promise<T> {
  const found = await Deno.stat(CHROMIUM).then((info) => info.isFile, () => false);
  assert.ok(found, `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    timeout: STEP_TIMEOUT_MS,
  });
  try {
    return await fn(browser);
  } finally {
    await browser.close().catch(() => {});
  }
}

/** A page in a fresh context (its own cookies), and what it saw. */
export interface WatchedPage {
  readonly page: Page;
  /** Messages of the dialogs that opened (each is dismissed). */
  readonly dialogs: string[];
  /** Console messages about Content-Security-Policy violations. */
  readonly violations: string[];
}

/** Opens a page in a fresh context that records dialogs and CSP violations. */
export async function watchedPage(browser: Browser): Promise<WatchedPage> {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  const dialogs: string[] = [];
  const violations: string[] = [];
  page.on("dialog", (dialog) => {
    dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  page.on("console", (message) => {
    if (/Content.Security.Policy/i.test(message.text())) violations.push(message.text());
  });
  return { page, dialogs, violations };
}

/**
 * Signs in at `${base}/inbox` with `token` and checks the session cookie:
 * HttpOnly, SameSite=Strict, and not the token.
 */
export async function signInInbox(
  page: Page,
  base: string,
  token: string,
  subject: string,
): Promise<void> {
  await page.goto(`${base}/inbox`);
  await page.fill("#token", token);
  await page.click('button[name="signin"]');
  await page.waitForSelector(".viewer");
  assert.equal(await page.textContent(".viewer"), subject);
  const cookies = await page.context().cookies();
  const session = cookies.find((cookie) => cookie.name === "plm_inbox_session");
  assert.ok(session?.httpOnly && session.sameSite === "Strict", "an HttpOnly, Strict cookie");
  assert.ok(!session.value.includes(token.split(".")[1]!), "the cookie is not the token");
}

/** The card of one approval. */
export function approvalCard(page: Page, approvalId: string) {
  return page.locator(`article[data-approval-id="${approvalId}"]`);
}
