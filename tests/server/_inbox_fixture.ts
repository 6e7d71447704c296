/**
 * A control plane with a policy that sends `bom.release` to role `approver`,
 * a token provider, and helpers to submit runs and sign in; shared by the
 * inbox's in-process and browser tests.
 *
 * @module
 */
import type { Hono } from "hono";
import {
  type Agent,
  AgentRuntime,
  ControlPlane,
  type Identity,
  type Timer,
} from "../../agent_runtime/mod.ts";
import { type Clock, Hs256JwtIdentityProvider, type Store } from "../../control_plane/mod.ts";

export const JWT_SECRET = "inbox-test-secret-of-at-least-32-bytes!";
export const COOKIE_SECRET = "inbox-cookie-secret-of-at-least-32-bytes";

export const HOSTILE_INPUT = {
  note: "<script>alert(1)</script>",
  title: '"><img src=x onerror=alert(2)>',
  lines: 3,
};

export const APPROVER: Identity = {
  subject: "ann",
  actorKind: "human",
  roles: ["approver"],
  scopes: [],
};
export const SECOND_APPROVER: Identity = { ...APPROVER, subject: "bob" };
export const REQUESTER: Identity = {
  subject: "rita",
  actorKind: "human",
  roles: ["engineer"],
  scopes: [],
};

/** The world of one test. */
export interface InboxWorld {
  readonly controlPlane: ControlPlane;
  readonly runtime: AgentRuntime;
  readonly provider: Hs256JwtIdentityProvider;
  /** A token for `identity`, valid for `ttlSeconds` (default 3600). */
  token(identity: Identity, ttlSeconds?: number): Promise<string>;
  /** Submits a `bom.release` run as the requester; returns its id and the approval. */
  submit(input?: unknown): Promise<{ runId: string; approvalId: string; digest: string }>;
}

/** Builds the world on `store`. */
export function inboxWorld(
  store: Store,
  options: { clock: Clock; quorum?: number; agents?: Agent[]; timer?: Timer },
): InboxWorld {
  const { clock, quorum = 1, agents = [] } = options;
  const controlPlane = new ControlPlane(store, {
    clock,
    policies: {
      rules: [{
        id: "release-needs-approver",
        effect: "require_approval",
        actions: ["bom.release"],
        description: "Releasing a BOM needs an approver",
        approval: { approverRoles: ["approver"], quorum, timeoutSeconds: 3600, onExpiry: "deny" },
      }],
    },
  });
  const runtime = new AgentRuntime({
    controlPlane,
    agents,
    clock,
    ...(options.timer === undefined ? {} : { timer: options.timer }),
  });
  const provider = new Hs256JwtIdentityProvider({ secret: JWT_SECRET, clock });
  return {
    controlPlane,
    runtime,
    provider,
    token: (identity, ttlSeconds = 3600) =>
      provider.issueToken({
        subject: identity.subject,
        actorKind: identity.actorKind as "human",
        roles: [...identity.roles],
        scopes: [...identity.scopes],
      }, { ttlSeconds }),
    async submit(input = HOSTILE_INPUT) {
      const runId = await runtime.submit({
        action: "bom.release",
        resource: "bom:<b>42</b>",
        input: input as never,
        risk: "high",
      }, { identity: REQUESTER });
      const run = await controlPlane.runs.get(runId);
      if (run.approvalId === null) throw new Error(`Run ${runId} is ${run.state}, not parked`);
      const approval = await controlPlane.approvals.get(run.approvalId);
      return { runId, approvalId: approval.id, digest: approval.digest };
    },
  };
}

/** A cookie jar over `app.request`: keeps cookies, follows nothing. */
export class Browser {
  readonly cookies = new Map<string, string>();
  readonly #app: Hono;
  readonly #origin: string;

  constructor(app: Hono, origin = "http://inbox.test") {
    this.#app = app;
    this.#origin = origin;
  }

  async get(path: string): Promise<Response> {
    return this.#keep(await this.#app.request(this.#origin + path, { headers: this.#headers() }));
  }

  async post(path: string, fields: Record<string, string>): Promise<Response> {
    return this.#keep(
      await this.#app.request(this.#origin + path, {
        method: "POST",
        headers: { ...this.#headers(), "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(fields).toString(),
      }),
    );
  }

  /** Signs in with `token`; returns the sign-in response. */
  async signIn(token: string): Promise<Response> {
    const page = await (await this.get("/inbox")).text();
    return await this.post("/inbox/signin", { token, _csrf: csrfOf(page) });
  }

  #headers(): Record<string, string> {
    if (this.cookies.size === 0) return {};
    return { cookie: [...this.cookies].map(([name, value]) => `${name}=${value}`).join("; ") };
  }

  #keep(response: Response): Response {
    for (const line of response.headers.getSetCookie()) {
      const [pair = ""] = line.split(";");
      const at = pair.indexOf("=");
      const name = pair.slice(0, at).trim();
      const value = pair.slice(at + 1).trim();
      if (value === "" || /max-age=0/i.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return response;
  }
}

/** The CSRF token of the first form on a page. */
export function csrfOf(page: string): string {
  const match = page.match(/name="_csrf" value="([^"]*)"/);
  if (match?.[1] === undefined) throw new Error("The page has no CSRF field");
  return match[1];
}
