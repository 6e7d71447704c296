import assert from "node:assert/strict";
import { Hono } from "hono";
import { FakeClock, openStore } from "../../control_plane/mod.ts";
import { escapeHtml, inboxRoutes } from "../../server/inbox/mod.ts";
import { SESSIONS_PER_SUBJECT, SessionStore } from "../../server/inbox/_sessions.ts";
import {
  APPROVER,
  Browser,
  COOKIE_SECRET,
  csrfOf,
  HOSTILE_INPUT,
  type InboxWorld,
  inboxWorld,
  REQUESTER,
  SECOND_APPROVER,
} from "./_inbox_fixture.ts";
import type { Store } from "../../control_plane/mod.ts";

const START = Date.UTC(2026, 10, 30, 12);

function setup(
  store: Store,
  quorum = 1,
): { world: InboxWorld; app: Hono; clock: FakeClock } {
  const clock = new FakeClock(START);
  const world = inboxWorld(store, { clock, quorum });
  let seed = 1;
  const app = new Hono().route(
    "/inbox",
    inboxRoutes({
      controlPlane: world.controlPlane,
      verifier: world.provider,
      cookieSecret: COOKIE_SECRET,
      clock,
      // A deterministic but varied source: each session and token differs.
      random: () => ((seed = (seed * 16807) % 2147483647) / 2147483647),
    }),
  );
  return { world, app, clock };
}

async function signedIn(app: Hono, world: InboxWorld, who = APPROVER): Promise<Browser> {
  const browser = new Browser(app);
  const response = await browser.signIn(await world.token(who));
  assert.equal(response.status, 303);
  return browser;
}

/** The form fields of the card's decision form, as the page gives them. */
function formOf(page: string): { _csrf: string; digest: string } {
  const digest = page.match(/name="digest" value="([0-9a-f]{64})"/)?.[1];
  assert.ok(digest !== undefined, "the page has a decision form");
  return { _csrf: csrfOf(page), digest };
}

Deno.test("inboxRoutes() sets the security headers on every page", async () => {
  await using store = await openStore(":memory:");
  const { app } = setup(store);
  for (const path of ["/inbox", "/inbox/inbox.css"]) {
    const response = await app.request(path);
    assert.equal(response.status, 200);
    assert.equal(
      response.headers.get("content-security-policy"),
      "default-src 'none'; style-src 'self'; script-src 'self'; form-action 'self'; " +
        "frame-ancestors 'none'; base-uri 'none'",
    );
    assert.equal(response.headers.get("x-content-type-options"), "nosniff");
    assert.equal(response.headers.get("referrer-policy"), "no-referrer");
    await response.body?.cancel();
  }
  const refused = await app.request("/inbox/signin", { method: "POST" });
  assert.equal(refused.status, 422);
  assert.equal(refused.headers.get("x-content-type-options"), "nosniff");
  assert.match(refused.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  const page = await refused.text();
  assert.match(page, /ERR_INVALID_ARGUMENT/);
  assert.doesNotMatch(page, /\bat .*\.ts:\d+/, "no stack trace");
});

Deno.test("inboxRoutes() signs in with a token: an opaque, HttpOnly, SameSite=Strict cookie", async (t) => {
  await using store = await openStore(":memory:");
  const { app, world } = setup(store);
  const token = await world.token(APPROVER);

  await t.step("over http: no Secure", async () => {
    const browser = new Browser(app);
    const response = await browser.signIn(token);
    assert.equal(response.status, 303);
    assert.equal(response.headers.get("location"), "/inbox");
    const cookie = response.headers.getSetCookie().find((c) => c.startsWith("plm_inbox_session="));
    assert.ok(cookie !== undefined);
    assert.match(cookie, /; HttpOnly/);
    assert.match(cookie, /; SameSite=Strict/);
    assert.match(cookie, /; Path=\/inbox/);
    assert.match(cookie, /; Max-Age=3600/);
    assert.doesNotMatch(cookie, /; Secure/);
    assert.ok(!cookie.includes(token) && !cookie.includes(token.split(".")[1]!));
    const page = await (await browser.get("/inbox")).text();
    assert.match(page, /Signed in as <strong class="viewer">ann<\/strong>/);
    assert.ok(!page.includes(token), "the token never comes back in a page");
  });

  await t.step("over https: Secure", async () => {
    const browser = new Browser(app, "https://inbox.test");
    const response = await browser.signIn(token);
    const cookie = response.headers.getSetCookie().find((c) => c.startsWith("plm_inbox_session="));
    assert.match(cookie ?? "", /; Secure/);
  });

  await t.step("a bad token is refused with 401 and no session cookie", async () => {
    const browser = new Browser(app);
    const forged = token.slice(0, -4) + (token.endsWith("AAAA") ? "BBBB" : "AAAA");
    const response = await browser.signIn(forged);
    assert.equal(response.status, 401);
    assert.ok(!response.headers.getSetCookie().some((c) => c.startsWith("plm_inbox_session=")));
    const page = await response.text();
    assert.match(page, /ERR_TOKEN_SIGNATURE_INVALID/);
    assert.ok(!page.includes(forged));
    assert.match(await (await browser.get("/inbox")).text(), /name="token"/);
  });

  await t.step("a sign in without the form's CSRF token is refused with 403", async () => {
    const browser = new Browser(app);
    await (await browser.get("/inbox")).body?.cancel();
    const missing = await browser.post("/inbox/signin", { token });
    assert.equal(missing.status, 403);
    assert.match(await missing.text(), /ERR_FORBIDDEN/);
    const wrong = await browser.post("/inbox/signin", { token, _csrf: "x".repeat(43) });
    assert.equal(wrong.status, 403);
    await wrong.body?.cancel();
    assert.ok(!browser.cookies.has("plm_inbox_session"));
  });

  await t.step("a signed-in viewer gets the sign-out form", async () => {
    const browser = await signedIn(app, world);
    assert.match(await (await browser.get("/inbox")).text(), /Sign out/);
  });
});

Deno.test("inboxRoutes() ends the session when the token expires and at sign out", async () => {
  await using store = await openStore(":memory:");
  const { app, world, clock } = setup(store);
  const browser = new Browser(app);
  assert.equal((await browser.signIn(await world.token(APPROVER, 60))).status, 303);
  assert.match(await (await browser.get("/inbox")).text(), /Sign out/);
  clock.advance(60_000);
  assert.match(await (await browser.get("/inbox")).text(), /name="token"/);

  assert.equal((await browser.signIn(await world.token(APPROVER))).status, 303);
  const page = await (await browser.get("/inbox")).text();
  const cookie = browser.cookies.get("plm_inbox_session");
  const noCsrf = await browser.post("/inbox/signout", {});
  assert.equal(noCsrf.status, 403);
  await noCsrf.body?.cancel();
  const out = await browser.post("/inbox/signout", { _csrf: csrfOf(page) });
  assert.equal(out.status, 303);
  assert.match(await (await browser.get("/inbox")).text(), /name="token"/);
  // The old cookie names no session any more.
  browser.cookies.set("plm_inbox_session", cookie!);
  assert.match(await (await browser.get("/inbox")).text(), /name="token"/);
});

Deno.test("inboxRoutes() shows hostile input as text", async () => {
  await using store = await openStore(":memory:");
  const { app, world } = setup(store);
  await world.submit();
  const browser = await signedIn(app, world);
  const page = await (await browser.get("/inbox")).text();
  assert.ok(!page.includes("<script"), "no script element at all");
  assert.ok(!page.includes("<img"), "no injected image");
  assert.ok(!page.includes("<b>42"), "the resource is escaped too");
  assert.ok(page.includes(escapeHtml(JSON.stringify(HOSTILE_INPUT, null, 2))));
  assert.ok(page.includes("bom:&lt;b&gt;42&lt;/b&gt;"));
  assert.match(page, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  assert.match(page, /&quot;&gt;&lt;img src=x onerror=alert\(2\)&gt;/);
});

Deno.test("inboxRoutes() shows the card's details to an approver", async () => {
  await using store = await openStore(":memory:");
  const { app, world } = setup(store);
  const { approvalId, runId } = await world.submit({ lines: 1 });
  const browser = await signedIn(app, world);
  const page = await (await browser.get("/inbox")).text();
  assert.match(page, new RegExp(`id="approval-${approvalId}"`));
  assert.match(page, /<h3 class="action">bom\.release<\/h3>/);
  assert.match(page, /<dd class="requester">rita \(human\)<\/dd>/);
  assert.match(page, /<dd class="risk risk-high">high<\/dd>/);
  assert.match(page, /<dd class="rule">release-needs-approver<\/dd>/);
  assert.match(page, /<dd class="reason">[^<]*Releasing a BOM needs an approver/);
  assert.match(page, /<dd class="quorum">0 of 1 approval \(roles: approver\)<\/dd>/);
  assert.match(page, /<dd class="deadline"><time datetime="2026-11-30T13:00:00.000Z">/);
  assert.match(page, /<dd class="expiry">deny: the run ends expired<\/dd>/);
  assert.match(
    page,
    new RegExp(`<code>${runId}</code>\\s*<span class="run-state"[^>]*>awaiting_approval`),
  );
  assert.match(page, /&quot;lines&quot;: 1/);
  assert.match(page, /value="approve"/);
  assert.match(page, /value="reject"/);
});

Deno.test("inboxRoutes() shows the requester its request without the decision forms", async () => {
  await using store = await openStore(":memory:");
  const { app, world } = setup(store);
  const { approvalId, digest } = await world.submit();
  const browser = await signedIn(app, world, REQUESTER);
  const page = await (await browser.get("/inbox")).text();
  assert.match(page, new RegExp(`id="approval-${approvalId}"`));
  assert.ok(!page.includes('value="approve"'));
  assert.ok(!page.includes('value="reject"'));
  assert.ok(!page.includes('name="digest"'));
  assert.match(page, /You requested this/);
  // A forged form is refused by the approval rules, as a page with the code.
  const forged = await browser.post(`/inbox/approvals/${approvalId}/decisions`, {
    _csrf: csrfOf(page),
    digest,
    decision: "approve",
  });
  assert.equal(forged.status, 403);
  const error = await forged.text();
  assert.match(error, /<code class="code">ERR_APPROVAL_SELF<\/code>/);
  assert.doesNotMatch(error, /\bat .*\.ts:\d+/);
  assert.equal((await world.controlPlane.approvals.get(approvalId)).state, "pending");

  // Someone without the role sees nothing to decide.
  const outsider = await signedIn(app, world, { ...REQUESTER, subject: "otto" });
  const empty = await (await outsider.get("/inbox")).text();
  assert.ok(!empty.includes(approvalId));
  assert.match(empty, /Nothing waits for you/);
});

Deno.test("inboxRoutes() refuses a decision without the session's CSRF token", async () => {
  await using store = await openStore(":memory:");
  const { app, world } = setup(store);
  const { approvalId } = await world.submit();
  const browser = await signedIn(app, world);
  const form = formOf(await (await browser.get("/inbox")).text());
  const path = `/inbox/approvals/${approvalId}/decisions`;
  const missing = await browser.post(path, { digest: form.digest, decision: "approve" });
  assert.equal(missing.status, 403);
  assert.match(await missing.text(), /ERR_FORBIDDEN/);
  const other = await signedIn(app, world, SECOND_APPROVER);
  const otherCsrf = csrfOf(await (await other.get("/inbox")).text());
  const wrong = await browser.post(path, { ...form, _csrf: otherCsrf, decision: "approve" });
  assert.equal(wrong.status, 403);
  await wrong.body?.cancel();
  assert.equal((await world.controlPlane.approvals.get(approvalId)).state, "pending");
  // Without a session at all: 401.
  const anonymous = await new Browser(app).post(path, { ...form, decision: "approve" });
  assert.equal(anonymous.status, 401);
  await anonymous.body?.cancel();
});

Deno.test("inboxRoutes() approves through the approval service and the run goes on", async () => {
  await using store = await openStore(":memory:");
  const { app, world } = setup(store);
  const { approvalId, runId } = await world.submit();
  const browser = await signedIn(app, world);
  const form = formOf(await (await browser.get("/inbox")).text());
  const response = await browser.post(`/inbox/approvals/${approvalId}/decisions`, {
    ...form,
    decision: "approve",
    comment: "Checked <the> BOM",
  });
  assert.equal(response.status, 303);
  assert.equal(response.headers.get("location"), `/inbox#approval-${approvalId}`);
  const approval = await world.controlPlane.approvals.get(approvalId);
  assert.equal(approval.state, "approved");
  assert.deepEqual(approval.votes.map((v) => [v.approver.subject, v.comment]), [
    ["ann", "Checked <the> BOM"],
  ]);
  assert.equal((await world.controlPlane.runs.get(runId)).state, "queued");
  const page = await (await browser.get("/inbox")).text();
  assert.match(page, /<h2>Decided here<\/h2>/);
  assert.match(page, new RegExp(`id="approval-${approvalId}"[^>]*data-state="approved"`));
  assert.match(page, /<strong>ann<\/strong> approved at/);
  assert.match(page, /<q>Checked &lt;the&gt; BOM<\/q>/);
  assert.match(page, /data-run-state="queued"/);
  assert.ok(!page.includes('value="approve"'), "no forms on a decided card");
  const decided = await world.controlPlane.audit.list({ actionPrefix: "approval.decided" });
  assert.equal(decided[0]?.actor.subject, "ann");

  // A second try is refused by the service: 409 with the code.
  const again = await browser.post(`/inbox/approvals/${approvalId}/decisions`, {
    ...form,
    decision: "approve",
  });
  assert.equal(again.status, 409);
  assert.match(await again.text(), /ERR_APPROVAL_NOT_PENDING/);
});

Deno.test("inboxRoutes() rejects only with a comment, and ends the run rejected", async () => {
  await using store = await openStore(":memory:");
  const { app, world } = setup(store);
  const { approvalId, runId } = await world.submit();
  const browser = await signedIn(app, world);
  const form = formOf(await (await browser.get("/inbox")).text());
  const path = `/inbox/approvals/${approvalId}/decisions`;
  const bare = await browser.post(path, { ...form, decision: "reject", comment: "  " });
  assert.equal(bare.status, 422);
  assert.match(await bare.text(), /ERR_INVALID_ARGUMENT/);
  const odd = await browser.post(path, { ...form, decision: "maybe" });
  assert.equal(odd.status, 422);
  await odd.body?.cancel();
  assert.equal((await world.controlPlane.approvals.get(approvalId)).state, "pending");

  const stale = await browser.post(path, {
    ...form,
    digest: "0".repeat(64),
    decision: "reject",
    comment: "no",
  });
  assert.equal(stale.status, 409);
  assert.match(await stale.text(), /ERR_APPROVAL_DIGEST_MISMATCH/);

  const response = await browser.post(path, { ...form, decision: "reject", comment: "Wrong BOM" });
  assert.equal(response.status, 303);
  await response.body?.cancel();
  assert.equal((await world.controlPlane.approvals.get(approvalId)).state, "rejected");
  const run = await world.controlPlane.runs.get(runId);
  assert.equal(run.state, "rejected");
  assert.match(run.error?.message ?? "", /Wrong BOM/);
  const page = await (await browser.get("/inbox")).text();
  assert.match(page, new RegExp(`id="approval-${approvalId}"[^>]*data-state="rejected"`));
  assert.match(page, /<dd class="outcome">Rejected by ann: Wrong BOM<\/dd>/);
});

Deno.test("inboxRoutes() shows quorum progress and who decided", async () => {
  await using store = await openStore(":memory:");
  const { app, world } = setup(store, 2);
  const { approvalId, runId } = await world.submit();
  const ann = await signedIn(app, world);
  const form = formOf(await (await ann.get("/inbox")).text());
  const first = await ann.post(`/inbox/approvals/${approvalId}/decisions`, {
    ...form,
    decision: "approve",
  });
  assert.equal(first.status, 303);
  const annPage = await (await ann.get("/inbox")).text();
  assert.match(annPage, /<dd class="quorum">1 of 2 approvals/);
  assert.match(annPage, /data-state="pending"/);
  assert.match(annPage, /You have decided on this request/);
  assert.ok(!annPage.includes('value="approve"'));

  const bob = await signedIn(app, world, SECOND_APPROVER);
  const bobPage = await (await bob.get("/inbox")).text();
  assert.match(bobPage, /<strong>ann<\/strong> approved/);
  const second = await bob.post(`/inbox/approvals/${approvalId}/decisions`, {
    ...formOf(bobPage),
    decision: "approve",
  });
  assert.equal(second.status, 303);
  assert.equal((await world.controlPlane.runs.get(runId)).state, "queued");
  assert.match(await (await bob.get("/inbox")).text(), /<dd class="quorum">2 of 2 approvals/);
});

Deno.test("inboxRoutes() refuses a short cookie secret and a bad mount path", async () => {
  await using store = await openStore(":memory:");
  const { world } = setup(store);
  const base = { controlPlane: world.controlPlane, verifier: world.provider };
  assert.throws(() => inboxRoutes({ ...base, cookieSecret: "short" }), RangeError);
  assert.throws(
    () => inboxRoutes({ ...base, cookieSecret: COOKIE_SECRET, basePath: "/inbox/" }),
    RangeError,
  );
  assert.throws(
    () => inboxRoutes({ ...base, cookieSecret: COOKIE_SECRET, maxSessions: 0 }),
    RangeError,
  );
});

Deno.test("inboxRoutes() gives a new session at each sign in and ends the one it replaces", async () => {
  await using store = await openStore(":memory:");
  const { app, world } = setup(store);
  const browser = await signedIn(app, world);
  const first = browser.cookies.get("plm_inbox_session")!;
  // The sign-in form is shown without a session; post it with the live session's cookie.
  browser.cookies.delete("plm_inbox_session");
  const signInForm = await (await browser.get("/inbox")).text();
  browser.cookies.set("plm_inbox_session", first);
  const again = await browser.post("/inbox/signin", {
    token: await world.token(APPROVER),
    _csrf: csrfOf(signInForm),
  });
  assert.equal(again.status, 303);
  const second = browser.cookies.get("plm_inbox_session")!;
  assert.notEqual(first, second);
  const stale = new Browser(app);
  stale.cookies.set("plm_inbox_session", first);
  assert.match(await (await stale.get("/inbox")).text(), /name="token"/);
  // A tampered cookie (the id without its signature) names no session.
  stale.cookies.set("plm_inbox_session", second.split(".")[0]!);
  assert.match(await (await stale.get("/inbox")).text(), /name="token"/);
});

Deno.test("inboxRoutes() refuses a body over 64 KiB with 413", async () => {
  await using store = await openStore(":memory:");
  const { app, world } = setup(store);
  const browser = await signedIn(app, world);
  const response = await browser.post("/inbox/signout", { _csrf: "x", pad: "x".repeat(70_000) });
  assert.equal(response.status, 413);
  assert.match(await response.text(), /ERR_INVALID_ARGUMENT/);
  assert.equal(response.headers.get("x-content-type-options"), "nosniff");
  assert.match(await (await browser.get("/inbox")).text(), /Sign out/);
});

Deno.test("inboxRoutes() offers no decision on a request past its deadline", async () => {
  await using store = await openStore(":memory:");
  const { app, world, clock } = setup(store);
  const { approvalId } = await world.submit();
  // A token that outlives the approval's hour.
  const browser = new Browser(app);
  assert.equal((await browser.signIn(await world.token(APPROVER, 7200))).status, 303);
  const form = formOf(await (await browser.get("/inbox")).text());
  clock.advance(3_600_000);
  const page = await (await browser.get("/inbox")).text();
  assert.match(page, /past its deadline/);
  assert.ok(!page.includes('value="approve"'));
  const late = await browser.post(`/inbox/approvals/${approvalId}/decisions`, {
    ...form,
    decision: "approve",
  });
  assert.equal(late.status, 409);
  assert.match(await late.text(), /ERR_APPROVAL_EXPIRED/);
});

Deno.test("inboxRoutes() shows an escalation's reason", async () => {
  await using store = await openStore(":memory:");
  const { app, world } = setup(store);
  const cp = world.controlPlane;
  const worker = { subject: "worker-1", kind: "service" } as const;
  const { run } = await cp.runs.create({
    task: {
      action: "bom.repair",
      resource: "bom:7",
      capabilities: [],
      input: null,
      risk: "medium",
      attributes: {},
    },
    requester: REQUESTER,
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  }, { actor: worker });
  await cp.runs.apply(run.id, { type: "escalate", reason: "Human tier: ERR_AGENT_FAILED" }, {
    actor: worker,
  });
  const { approval } = await cp.requestApproval(run.id, {
    approverRoles: ["approver"],
    quorum: 1,
    timeoutSeconds: 600,
    onExpiry: "escalate",
  }, { kind: "escalation", actor: worker });
  const browser = await signedIn(app, world);
  const page = await (await browser.get("/inbox")).text();
  assert.match(page, new RegExp(`id="approval-${approval.id}"`));
  assert.match(page, /<dd class="rule">escalation<\/dd>/);
  assert.match(page, /<dd class="reason">Human tier: ERR_AGENT_FAILED<\/dd>/);
  assert.match(page, /<dd class="expiry">escalate: the run goes to the next tier<\/dd>/);
  assert.match(page, /<pre class="input">null<\/pre>/);
});

Deno.test("one subject signing in again and again cannot push other users' sessions out", () => {
  const store = new SessionStore(new FakeClock(0), undefined, 10);
  const identity = (subject: string) => ({
    subject,
    actorKind: "human" as const,
    roles: [],
    scopes: [],
  });
  const approver = store.create(identity("ann"), 1_000);
  const flood = Array.from({ length: 50 }, () => store.create(identity("mallory"), 1_000));
  assert.ok(store.get(approver.id) !== undefined, "ann's session survives");
  const live = flood.filter((session) => store.get(session.id) !== undefined);
  assert.equal(live.length, SESSIONS_PER_SUBJECT, "mallory keeps only her newest sessions");
  assert.deepEqual(live, flood.slice(-SESSIONS_PER_SUBJECT));
});
