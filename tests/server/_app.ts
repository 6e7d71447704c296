/** Helpers for the HTTP API's in-process tests: an app on `:memory:`, tokens, requests. */
import assert from "node:assert/strict";
import {
  FakeClock,
  FakeTimers,
  Hs256JwtIdentityProvider,
  MIGRATIONS,
  openStore,
  type PolicySet,
  type Store,
} from "../../control_plane/mod.ts";
import { createApp, ProblemSchema, type ServerDeps } from "../../server/mod.ts";

export const SECRET = "a-test-secret-of-at-least-32-bytes-long";

/** Reads are open, releases need a lead, the rest is denied. */
export const POLICY: PolicySet = {
  id: "server-test",
  rules: [
    { id: "reads", effect: "allow", actions: ["bom.read"] },
    {
      id: "release-needs-lead",
      description: "A release needs a lead's approval",
      effect: "require_approval",
      actions: ["bom.release"],
      approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" },
    },
  ],
};

export interface TestApp extends AsyncDisposable {
  readonly store: Store;
  readonly app: ReturnType<typeof createApp>;
  readonly clock: FakeClock;
  readonly timers: FakeTimers;
  readonly provider: Hs256JwtIdentityProvider;
  readonly errors: unknown[];
  /** A token of a human with these roles. */
  token(subject: string, roles?: string[]): Promise<string>;
  /** A request; `body` is sent as JSON unless it is a string or stream. */
  call(
    method: string,
    path: string,
    options?: {
      token?: string;
      body?: unknown;
      headers?: HeadersInit;
    },
  ): Promise<Response>;
}

export async function testApp(overrides: Partial<ServerDeps> = {}): Promise<TestApp> {
  const store = await openStore(":memory:");
  const clock = new FakeClock(Date.UTC(2026, 10, 30, 12));
  const timers = new FakeTimers(clock);
  const provider = new Hs256JwtIdentityProvider({ secret: SECRET, clock });
  const errors: unknown[] = [];
  let n = 0;
  const app = createApp({
    store,
    verifier: provider,
    policies: () => POLICY,
    schemaVersion: MIGRATIONS.length,
    clock,
    timer: timers.timer,
    generateId: () => `id-${++n}`,
    onError: (err) => errors.push(err),
    ...overrides,
  });
  return {
    store,
    app,
    clock,
    timers,
    provider,
    errors,
    token: (subject, roles = []) =>
      provider.issueToken({ subject, actorKind: "human", roles, scopes: [] }),
    call: (method, path, options = {}) => {
      const headers = new Headers(options.headers);
      if (options.token !== undefined) headers.set("authorization", `Bearer ${options.token}`);
      let body: BodyInit | undefined;
      if (typeof options.body === "string" || options.body instanceof ReadableStream) {
        body = options.body;
      } else if (options.body !== undefined) {
        body = JSON.stringify(options.body);
        if (!headers.has("content-type")) headers.set("content-type", "application/json");
      }
      return Promise.resolve(app.request(path, { method, headers, ...(body ? { body } : {}) }));
    },
    [Symbol.asyncDispose]: () => store.close(),
  };
}

/** Asserts an RFC 9457 problem with this status and code; returns its body. */
export async function assertProblem(
  res: Response,
  status: number,
  code: string,
): Promise<{ detail: string; field?: string; title: string; type: string }> {
  assert.equal(res.headers.get("content-type"), "application/problem+json");
  const body = await res.json();
  assert.equal(res.status, status, JSON.stringify(body));
  assert.ok(ProblemSchema.safeParse(body).success, JSON.stringify(body));
  assert.equal(body.status, status);
  assert.equal(body.code, code);
  assert.equal(body.type, `urn:plm:error:${code}`);
  assert.equal(typeof body.title, "string");
  assert.equal(typeof body.detail, "string");
  return body;
}
