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
import { defineAgent } from "../../agent_runtime/mod.ts";
import { openStore, systemClock } from "../../control_plane/mod.ts";
import { inboxRoutes } from "../../server/inbox/mod.ts";
import { APPROVER, COOKIE_SECRET, HOSTILE_INPUT, inboxWorld, REQUESTER } from "./_inbox_fixture.ts";
import {
  approvalCard,
  signInInbox,
  STEP_TIMEOUT_MS,
  watchedPage,
  withChromium,
} from "./_inbox_browser.ts";

Deno.test("the inbox in Chromium: sign in, hostile input inert, approve, the run succeeds", async () => {
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
  try {
    const { runId, approvalId } = await world.submit();
    world.runtime.start({ pollIntervalMs: 50, maxPollIntervalMs: 200 });
    await withChromium(async (browser) => {
      // The requester sees its own request, without the approve or reject buttons.
      const requester = await watchedPage(browser);
      const mine = approvalCard(requester.page, approvalId);
      await signInInbox(requester.page, base, await world.token(REQUESTER), REQUESTER.subject);
      assert.equal(await mine.count(), 1);
      assert.equal(await requester.page.locator('button[value="approve"]').count(), 0);
      assert.equal(await requester.page.locator('button[value="reject"]').count(), 0);
      assert.match(await mine.textContent() ?? "", /You requested this/);
      await requester.page.click('button[name="signout"]');
      await requester.page.waitForSelector("#token");
      assert.equal(await mine.count(), 0);

      // The approver sees the card; the hostile input is text.
      const approver = await watchedPage(browser);
      const page = approver.page;
      const card = approvalCard(page, approvalId);
      await signInInbox(page, base, await world.token(APPROVER), APPROVER.subject);
      assert.deepEqual(
        JSON.parse(await card.locator("pre.input").textContent() ?? ""),
        HOSTILE_INPUT,
      );
      assert.equal(await card.locator(".resource").textContent(), "bom:<b>42</b>");
      assert.equal(await card.locator(".rule").textContent(), "release-needs-approver");
      assert.equal(await page.locator("script").count(), 0);
      assert.equal(await page.locator("img").count(), 0);
      assert.equal(await page.locator("main b").count(), 0);
      const screenshot = join(dir, "inbox.png");
      await page.screenshot({ path: screenshot, fullPage: true });
      const png = await Deno.readFile(screenshot);
      assert.ok(png.length > 1_000, `the screenshot has ${png.length} bytes`);
      assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

      // Approve; the card shows the outcome and the run goes on to succeed.
      await card.locator('textarea[name="comment"]').first().fill("Looks right");
      await card.locator('button[value="approve"]').click();
      await page.waitForSelector(
        `article[data-approval-id="${approvalId}"][data-state="approved"]`,
      );
      assert.match(await card.locator(".votes").textContent() ?? "", /ann approved/);
      const deadline = Date.now() + STEP_TIMEOUT_MS;
      let state = (await world.controlPlane.runs.get(runId)).state;
      while (state !== "succeeded" && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        state = (await world.controlPlane.runs.get(runId)).state;
      }
      assert.equal(state, "succeeded");
      await page.reload();
      assert.equal(await card.locator(".run-state").getAttribute("data-run-state"), "succeeded");
      await page.screenshot({ path: join(dir, "inbox-approved.png"), fullPage: true });

      for (const seen of [requester, approver]) {
        assert.deepEqual(seen.dialogs, [], "no dialog fired");
        assert.deepEqual(seen.violations, [], "no Content-Security-Policy violation");
      }
    });
  } finally {
    await world.runtime.stop();
    await server.shutdown();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
