/**
 * {@link inboxRoutes}: the approvals inbox, a Hono sub-app to mount at
 * `/inbox`. Server-rendered pages, no script; a pasted token becomes an
 * opaque session cookie; every form carries a CSRF token; decisions go
 * through `ControlPlane.decideApproval` (so `ApprovalService.decide`: digest,
 * separation of duties, roles, quorum), which carries the outcome to the run.
 *
 * @module
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { deleteCookie, getSignedCookie, setSignedCookie } from "hono/cookie";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import {
  type ActorKind,
  type Approval,
  type Clock,
  type ControlPlane,
  type Identity,
  INPUT_LIMITS,
  invalidArgument,
  isPlmError,
  type JsonValue,
  mayDecide,
  MIN_SECRET_BYTES,
  PlmError,
  type Random,
  type Run,
  systemClock,
  type TokenVerifier,
} from "../../control_plane/mod.ts";
import {
  hmac,
  importHmacKey,
  randomToken,
  type Session,
  SessionStore,
  timingSafeEqual,
} from "./_sessions.ts";
import {
  type CardView,
  errorPage,
  INBOX_CSS,
  inboxPage,
  type Paths,
  signInPage,
} from "./_views.ts";
import { problemOf } from "../problem.ts";

/** What the inbox needs, for {@link inboxRoutes}. */
export interface InboxDeps {
  /**
   * Approvals are read and decided through it (`decideApproval`, which moves the run);
   * runs and the audit log are read. Any control plane on the store will do: deciding
   * an approval does not consult the policy (the approval carries its own spec).
   */
  controlPlane: ControlPlane;
  /** Verifies the token an approver pastes at sign in (`Hs256JwtIdentityProvider`). */
  verifier: TokenVerifier;
  /**
   * Signs the session cookie: at least `MIN_SECRET_BYTES` (32) bytes, a string in UTF-8.
   * Sessions live in this process's memory, so 32 random bytes drawn at start will do.
   */
  cookieSecret: string | Uint8Array;
  /**
   * Session expiry and "past its deadline".
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Session ids and CSRF tokens (each byte `floor(random() * 256)`); inject only in tests.
   *
   * @default {crypto.getRandomValues}
   */
  random?: Random;
  /**
   * Whether cookies get `Secure`; by default they do when the request came over https.
   * Set `true` behind a proxy that ends TLS.
   *
   * @default {undefined}
   */
  secureCookies?: boolean;
  /**
   * Where the sub-app is mounted, for links and form actions.
   *
   * @default {"/inbox"}
   */
  basePath?: string;
  /**
   * The most sessions held in memory; the oldest goes first.
   *
   * @default {10000}
   */
  maxSessions?: number;
  /**
   * The longest session, in seconds, when the token carries no expiry.
   *
   * @default {28800}
   */
  maxSessionSeconds?: number;
  /**
   * The actor kinds shown the approve and reject forms (`ApprovalService`'s `approverKinds`).
   *
   * @default {["human"]}
   */
  approverKinds?: readonly ActorKind[];
}

const SESSION_COOKIE = "plm_inbox_session";
const SIGNIN_COOKIE = "plm_inbox_signin";
const MAX_BODY_BYTES = 64 * 1024;
const MAX_CARDS = 200;

/**
 * The headers on every inbox response: a strict Content-Security-Policy (no
 * inline script or style, forms post to the inbox only, never framed),
 * `nosniff`, no referrer, and no caching.
 *
 * @example The policy allows scripts and styles from the inbox only
 * ```ts
 * import { INBOX_SECURITY_HEADERS } from "./routes.ts";
 * import assert from "node:assert/strict";
 *
 * const csp = INBOX_SECURITY_HEADERS["Content-Security-Policy"] ?? "";
 * assert.match(csp, /default-src 'none'/);
 * assert.match(csp, /script-src 'self'/);
 * assert.equal(INBOX_SECURITY_HEADERS["X-Content-Type-Options"], "nosniff");
 * ```
 */
export const INBOX_SECURITY_HEADERS: { readonly [name: string]: string } = Object.freeze({
  "Content-Security-Policy":
    "default-src 'none'; style-src 'self'; script-src 'self'; form-action 'self'; " +
    "frame-ancestors 'none'; base-uri 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
  "Cache-Control": "no-store",
});

/**
 * The approvals inbox as a Hono sub-app, to mount at `basePath` (`/inbox`):
 *
 * - `GET /inbox`: the sign-in form, or the viewer's cards: the pending approvals
 *   they may decide or requested, then those decided in this session with their outcome;
 * - `POST /inbox/signin` (`token`, `_csrf`): verifies the token and sets an HttpOnly,
 *   SameSite=Strict session cookie (Secure over https) holding an opaque session id that
 *   expires with the token; a refused token gets `401` and no cookie;
 * - `POST /inbox/signout` (`_csrf`): ends the session;
 * - `POST /inbox/approvals/:id/decisions` (`decision`, `digest`, `comment`, `_csrf`):
 *   decides through `ControlPlane.decideApproval` (a rejection needs a comment) and
 *   redirects back to the inbox, where the card shows the outcome;
 * - `GET /inbox/inbox.css`.
 *
 * Every form carries a CSRF token (compared in constant time; missing or wrong: `403`).
 * Every response carries {@link INBOX_SECURITY_HEADERS}. Errors are pages with the
 * `PlmError` code and status (`401` token, `403` forbidden, `404` not found, `409`
 * conflict, `413` body too large, `422` invalid), never a stack.
 *
 * @param deps The control plane, the token verifier, the cookie secret, clock and random.
 * @returns The sub-app.
 * @throws {RangeError} When `cookieSecret` is shorter than 32 bytes or a limit is not a
 * positive integer.
 *
 * @example Mount the inbox and open it
 * ```ts
 * import { Hono } from "hono";
 * import {
 *   ControlPlane,
 *   Hs256JwtIdentityProvider,
 *   openStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import { inboxRoutes } from "./routes.ts";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const controlPlane = new ControlPlane(store, { policies: { rules: [] } });
 * const secret = "an-example-secret-of-at-least-32-bytes";
 * const app = new Hono().route("/inbox", inboxRoutes({
 *   controlPlane,
 *   verifier: new Hs256JwtIdentityProvider({ secret }),
 *   cookieSecret: "another-secret-of-at-least-32-bytes!",
 * }));
 * const page = await app.request("/inbox");
 * assert.equal(page.status, 200);
 * assert.match(await page.text(), /Sign in/);
 * assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'/);
 * ```
 */
export function inboxRoutes(deps: InboxDeps): Hono {
  const {
    controlPlane: cp,
    verifier,
    clock = systemClock,
    random,
    secureCookies,
    basePath = "/inbox",
    maxSessions = 10_000,
    maxSessionSeconds = 28_800,
    approverKinds = ["human"],
  } = deps;
  const secret = typeof deps.cookieSecret === "string"
    ? new TextEncoder().encode(deps.cookieSecret)
    : new Uint8Array(deps.cookieSecret);
  if (secret.length < MIN_SECRET_BYTES) {
    throw new RangeError(
      `Cannot sign inbox cookies with a ${secret.length}-byte secret: at least ${MIN_SECRET_BYTES} bytes are needed`,
    );
  }
  for (
    const [name, value] of [["maxSessions", maxSessions], [
      "maxSessionSeconds",
      maxSessionSeconds,
    ]] as const
  ) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`Cannot use ${name} ${value}: expected a positive integer`);
    }
  }
  if (!/^\/[A-Za-z0-9._~\/-]*$/.test(basePath) || basePath.endsWith("/")) {
    throw new RangeError(
      `Cannot mount the inbox at ${JSON.stringify(basePath)}: expected a path like /inbox`,
    );
  }
  const sessions = new SessionStore(clock, random, maxSessions);
  const signinKey = importHmacKey(secret);
  const paths: Paths = {
    base: basePath,
    css: `${basePath}/inbox.css`,
    signIn: `${basePath}/signin`,
    signOut: `${basePath}/signout`,
    decisions: (id) => `${basePath}/approvals/${encodeURIComponent(id)}/decisions`,
  };

  const secure = (c: Context) => secureCookies ?? new URL(c.req.url).protocol === "https:";

  const currentSession = async (c: Context): Promise<Session | undefined> =>
    sessions.get(await getSignedCookie(c, secret, SESSION_COOKIE));

  /** The sign-in form's CSRF token: an HMAC of a random nonce kept in a signed cookie. */
  const signinToken = async (c: Context, create: boolean): Promise<string | undefined> => {
    let nonce = await getSignedCookie(c, secret, SIGNIN_COOKIE);
    if (typeof nonce !== "string" || nonce === "") {
      if (!create) return undefined;
      nonce = randomToken(random);
      await setSignedCookie(c, SIGNIN_COOKIE, nonce, secret, {
        path: basePath,
        httpOnly: true,
        secure: secure(c),
        sameSite: "Strict",
      });
    }
    return await hmac(await signinKey, `signin:${nonce}`);
  };

  /**
   * The fields of a form post (`application/x-www-form-urlencoded`, what a
   * browser sends), read as text so that an outer middleware that already
   * read the body (an app-wide size or time limit) does not break it.
   */
  const form = async (c: Context): Promise<Record<string, string>> => {
    const type = c.req.header("content-type") ?? "";
    if (!/^application\/x-www-form-urlencoded\s*(;.*)?$/i.test(type)) {
      throw invalidArgument("content-type", "expected application/x-www-form-urlencoded");
    }
    const text = await c.req.text();
    if (text.length > MAX_BODY_BYTES) throw tooLarge();
    const fields: Record<string, string> = Object.create(null);
    for (const [name, value] of new URLSearchParams(text)) {
      if (Object.hasOwn(fields, name)) throw invalidArgument(name, "expected one value");
      fields[name] = value;
    }
    return fields;
  };

  const checkCsrf = (expected: string | undefined, given: string | undefined) => {
    if (expected === undefined || given === undefined || !timingSafeEqual(expected, given)) {
      throw new PlmError(
        "ERR_FORBIDDEN",
        given === undefined || given === ""
          ? "The form has no CSRF token: reload the inbox and try again"
          : "The form's CSRF token is not this session's: reload the inbox and try again",
      );
    }
  };

  const asked = new Map<string, { rules: readonly string[]; reason: string | null }>();
  const card = async (approval: Approval, viewer: Identity, now: number): Promise<CardView> => {
    let run: Run | undefined;
    try {
      run = await cp.runs.get(approval.runId);
    } catch (err) {
      if (!isPlmError(err, "ERR_RUN_NOT_FOUND")) throw err;
    }
    let why = asked.get(approval.id);
    if (why === undefined) {
      why = await whyAsked(cp, approval);
      // Why an approval was asked never changes: keep it, the oldest going first.
      if (asked.size >= MAX_CARDS * 5) asked.delete(asked.keys().next().value!);
      asked.set(approval.id, why);
    }
    const { rules, reason } = why;
    const mine = viewer.subject === approval.requester.subject;
    const voted = approval.votes.some((vote) => vote.approver.subject === viewer.subject);
    const pending = approval.state === "pending" && now < approval.deadline;
    const canDecide = mayDecide(approval, viewer, { approverKinds, now });
    const note = mine
      ? "You requested this: another approver decides it."
      : voted
      ? "You have decided on this request."
      : approval.state === "pending" && !pending
      ? "Past its deadline: it is about to expire."
      : undefined;
    return { approval, run, rules, reason, canDecide, note };
  };

  const app = new Hono();

  app.use("*", async (c, next) => {
    await next();
    for (const [name, value] of Object.entries(INBOX_SECURITY_HEADERS)) {
      c.res.headers.set(name, value);
    }
  });

  app.onError((err, c) => {
    const { status, code, message } = describeError(err);
    return c.html(errorPage(paths, status, code, message), status);
  });

  // The body limit, unless an outer middleware (the app's own limit and timeout) has
  // already read the body: then `form` checks the size of what it was handed.
  const limit = bodyLimit({ maxSize: MAX_BODY_BYTES, onError: () => Promise.reject(tooLarge()) });
  app.use("*", (c, next) => {
    const body = c.req.raw.body;
    return body === null || c.req.raw.bodyUsed || body.locked ? next() : limit(c, next);
  });

  app.get("/inbox.css", (c) => {
    c.header("Content-Type", "text/css; charset=utf-8");
    return c.body(INBOX_CSS);
  });

  app.get("/", async (c) => {
    const session = await currentSession(c);
    if (session === undefined) {
      return c.html(signInPage(paths, (await signinToken(c, true))!));
    }
    const viewer = session.identity;
    const now = clock.now();
    const pending = (await cp.approvals.list({ state: "pending", limit: INPUT_LIMITS.listLimit }))
      .filter((approval) =>
        approval.requester.subject === viewer.subject ||
        approval.votes.some((vote) => vote.approver.subject === viewer.subject) ||
        // Theirs to decide but for the deadline: an overdue card shows why it cannot be.
        mayDecide(approval, viewer, { approverKinds, now: approval.createdAt })
      ).slice(0, MAX_CARDS);
    const shown = new Set(pending.map((approval) => approval.id));
    const decided: Approval[] = [];
    for (const id of session.decided) {
      if (shown.has(id)) continue;
      try {
        decided.push(await cp.approvals.get(id));
      } catch (err) {
        if (!isPlmError(err, "ERR_APPROVAL_NOT_FOUND")) throw err;
      }
    }
    const cards = async (list: Approval[]) => {
      const out: CardView[] = [];
      for (const approval of list) out.push(await card(approval, viewer, now));
      return out;
    };
    return c.html(
      inboxPage(paths, viewer, session.csrf, await cards(pending), await cards(decided), now),
    );
  });

  app.post("/signin", async (c) => {
    const fields = await form(c);
    checkCsrf(await signinToken(c, false), fields["_csrf"]);
    let identity: Identity;
    try {
      identity = await verifier.verifyToken((fields["token"] ?? "").trim());
    } catch (err) {
      if (!isPlmError(err) || !err.code.startsWith("ERR_TOKEN_")) throw err;
      return c.html(
        signInPage(paths, (await signinToken(c, true))!, { code: err.code, message: err.message }),
        401,
      );
    }
    // A sign in always gets a new session id (no fixation); the one it replaces ends.
    const previous = await currentSession(c);
    if (previous !== undefined) sessions.delete(previous.id);
    const now = clock.now();
    const expiresAt = Math.min(identity.expiresAt ?? Infinity, now + maxSessionSeconds * 1000);
    const session = sessions.create(identity, expiresAt);
    await setSignedCookie(c, SESSION_COOKIE, session.id, secret, {
      path: basePath,
      httpOnly: true,
      secure: secure(c),
      sameSite: "Strict",
      maxAge: Math.max(1, Math.floor((expiresAt - now) / 1000)),
    });
    deleteCookie(c, SIGNIN_COOKIE, { path: basePath, secure: secure(c) });
    return c.redirect(basePath, 303);
  });

  app.post("/signout", async (c) => {
    const session = await currentSession(c);
    const fields = await form(c);
    if (session !== undefined) {
      checkCsrf(session.csrf, fields["_csrf"]);
      sessions.delete(session.id);
    }
    deleteCookie(c, SESSION_COOKIE, { path: basePath, secure: secure(c) });
    return c.redirect(basePath, 303);
  });

  app.post("/approvals/:id/decisions", async (c) => {
    const session = await currentSession(c);
    if (session === undefined) {
      throw new PlmError("ERR_IDENTITY_REQUIRED", "Sign in to decide approvals");
    }
    const fields = await form(c);
    checkCsrf(session.csrf, fields["_csrf"]);
    const id = c.req.param("id");
    const decision = fields["decision"];
    if (decision !== "approve" && decision !== "reject") {
      throw invalidArgument("decision", 'expected "approve" or "reject"');
    }
    const comment = (fields["comment"] ?? "").trim();
    if (decision === "reject" && comment === "") {
      throw invalidArgument("comment", "a rejection needs a comment");
    }
    await cp.decideApproval(id, decision, {
      identity: session.identity,
      digest: fields["digest"] ?? "",
      ...(comment === "" ? {} : { comment }),
    });
    sessions.remember(session, id);
    return c.redirect(`${basePath}#approval-${encodeURIComponent(id)}`, 303);
  });

  return app;
}

/**
 * The rule and reason an approval was asked for: the run's last `policy.decide`
 * record that required it, or the run's escalation.
 */
async function whyAsked(
  cp: ControlPlane,
  approval: Approval,
): Promise<{ rules: readonly string[]; reason: string | null }> {
  const records = await cp.audit.list({ runId: approval.runId, newestFirst: true, limit: 100 });
  const before = records.filter((record) => record.at <= approval.createdAt);
  if (approval.kind === "escalation") {
    const escalated = before.find((r) =>
      r.action === "run.transition" && r.outcome === "escalated"
    );
    return { rules: [], reason: escalated?.reason ?? null };
  }
  const decided = before.find((r) =>
    r.action === "policy.decide" && r.outcome === "require_approval"
  );
  if (decided === undefined) return { rules: [], reason: null };
  const data = decided.data;
  const ids = typeof data === "object" && data !== null && !Array.isArray(data)
    ? (data as { readonly [key: string]: JsonValue })["matchedRuleIds"]
    : undefined;
  return {
    rules: Array.isArray(ids) ? ids.filter((id): id is string => typeof id === "string") : [],
    reason: decided.reason,
  };
}

/** A form over {@link MAX_BODY_BYTES}: answered `413`. */
class BodyTooLargeError extends PlmError {
  constructor() {
    super("ERR_INVALID_ARGUMENT", `The request body is over ${MAX_BODY_BYTES} bytes`);
    this.name = "BodyTooLargeError";
  }
}

function tooLarge(): BodyTooLargeError {
  return new BodyTooLargeError();
}

/** The status, code and message an error page shows; unexpected errors show no details. */
function describeError(
  err: unknown,
): { status: ContentfulStatusCode; code: string; message: string } {
  if (err instanceof BodyTooLargeError) {
    return { status: 413, code: err.code, message: err.message };
  }
  // The API's one mapping of codes to statuses and safe details (store faults say nothing
  // of the server behind them).
  const problem = problemOf(err);
  if (problem.status >= 500 && !isPlmError(err)) {
    console.error("plm inbox: unexpected error:", err);
  }
  return {
    status: problem.status as ContentfulStatusCode,
    code: problem.code,
    message: problem.status === 500 ? "The inbox failed: see the server log" : problem.detail,
  };
}
