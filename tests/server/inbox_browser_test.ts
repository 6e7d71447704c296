/**
 * The approvals inbox end to end in a real headless Chromium (Debian's
 * `chromium`, driven by `playwright-core`): the requester sees its request
 * without an approve button, the approver signs in, sees hostile input as
 * text (no dialog fires), approves, and the run succeeds.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Hono } from "hono";
import { type Browser, chromium, type Page } from "playwright-core";
import { defineAgent } from "../../agent_runtime/mod.ts";
import { openStore, systemClock } from "../../control_plane/mod.ts";
import { inboxRoutes } from "../../server/inbox/mod.ts";
import { APPROVER, COOKIE_SECRET, HOSTILE_INPUT, inboxWorld, REQUESTER } from "./_inbox_fixture.ts";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
];
/** Every browser step's timeout; the whole test stays well under 30 s. */
const STEP_TIMEOUT_MS = 10_000;

Deno.test("the inbox in Chromium: sign in, hostile input inert, approve, the run succeeds", async () => {
  const found = await Deno.stat(CHROMIUM).then((info) => info.isFile, () => false);
  assert.ok(found, `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  const dir = await Deno.makeTempDir({ prefix: "plm_inbox_browser_" });
  const store = await openStore(join(dir, "plm.db"));
  const releaser = defineAgent({
    id: "releaser",
    invoke: (task) => Promise.resolve({ released: task.resource }),
  });
  const world = inboxWorld(store, { clock: systemClock, agents: [releaser] });
  const app = new Hono().route(
    "/inbox",
    inboxRoutes({
      controlPlane: world.controlPlane,
      verifier: world.provider,
      cookieSecret: COOKIE_SECRET,
    }),
  );
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, app.fetch);
  const base = `http://127.0.0.1:${server.addr.port}`;
  let browser: Browser | undefined;
  try {
    const { runId, approvalId } = await world.submit();
    world.runtime.start({ pollIntervalMs: 50, maxPollIntervalMs: 200 });

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      timeout: STEP_TIMEOUT_MS,
    });
    const dialogs: string[] = [];
    const violations: string[] = [];
    const open = async (): Promise<Page> => {
      const context = await browser!.newContext();
      const page = await context.newPage();
      page.setDefaultTimeout(STEP_TIMEOUT_MS);
      page.on("dialog", (dialog) => {
        dialogs.push(dialog.message());
        dialog.dismiss().catch(() => {});
      });
      page.on("console", (message) => {
        if (/Content.Security.Policy/i.test(message.text())) violations.push(message.text());
      });
      return page;
    };
    const signIn = async (page: Page, token: string, subject: string) => {
      await page.goto(`${base}/inbox`);
      await page.fill("#token", token);
      await page.click('button[name="signin"]');
      await page.waitForSelector(".viewer");
      assert.equal(await page.textContent(".viewer"), subject);
      const cookies = await page.context().cookies();
      const session = cookies.find((cookie) => cookie.name === "plm_inbox_session");
      assert.ok(session?.httpOnly && session.sameSite === "Strict");
      assert.ok(!session.value.includes(token.split(".")[1]!), "the cookie is not the token");
    };
    const card = (page: Page) => page.locator(`article[data-approval-id="${approvalId}"]`);

    // The requester sees its own request, without the approve or reject buttons.
    const requester = await open();
    await signIn(requester, await world.token(REQUESTER), REQUESTER.subject);
    assert.equal(await card(requester).count(), 1);
    assert.equal(await requester.locator('button[value="approve"]').count(), 0);
    assert.equal(await requester.locator('button[value="reject"]').count(), 0);
    assert.match(await card(requester).textContent() ?? "", /You requested this/);
    await requester.click('button[name="signout"]');
    await requester.waitForSelector("#token");
    assert.equal(await card(requester).count(), 0);

    // The approver sees the card; the hostile input is text.
    const approver = await open();
    await signIn(approver, await world.token(APPROVER), APPROVER.subject);
    const input = JSON.parse(await card(approver).locator("pre.input").textContent() ?? "");
    assert.deepEqual(input, HOSTILE_INPUT);
    assert.equal(await card(approver).locator(".resource").textContent(), "bom:<b>42</b>");
    assert.equal(await approver.locator("script").count(), 0);
    assert.equal(await approver.locator("img").count(), 0);
    assert.equal(await approver.locator("main b").count(), 0);
    assert.equal(
      await card(approver).locator(".rule").textContent(),
      "release-needs-approver",
    );
    const screenshot = join(dir, "inbox.png");
    await approver.screenshot({ path: screenshot, fullPage: true });
    const png = await Deno.readFile(screenshot);
    assert.ok(png.length > 1_000, `the screenshot has ${png.length} bytes`);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

    // Approve; the card shows the outcome and the run goes on to succeed.
    await card(approver).locator('textarea[name="comment"]').first().fill("Looks right");
    await card(approver).locator('button[value="approve"]').click();
    await approver.waitForSelector(
      `article[data-approval-id="${approvalId}"][data-state="approved"]`,
    );
    assert.match(await card(approver).locator(".votes").textContent() ?? "", /ann approved/);
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    let state = (await world.controlPlane.runs.get(runId)).state;
    while (state !== "succeeded" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      state = (await world.controlPlane.runs.get(runId)).state;
    }
    assert.equal(state, "succeeded");
    await approver.reload();
    assert.equal(
      await card(approver).locator(".run-state").getAttribute("data-run-state"),
      "succeeded",
    );
    await approver.screenshot({ path: join(dir, "inbox-approved.png"), fullPage: true });

    assert.deepEqual(dialogs, [], "no dialog fired");
    assert.deepEqual(violations, [], "no Content-Security-Policy violation");
  } finally {
    await browser?.close().catch(() => {});
    await world.runtime.stop();
    await server.shutdown();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
