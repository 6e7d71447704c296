// Hs256JwtIdentityProvider.verifyToken() side by side with plain jose.jwtVerify() on the same
// token and an HMAC key imported from the same secret, and issueToken() beside jose's SignJWT.
// Verification does not call jose (docs/adr/0005), so the two sides do the same work apart
// from our stricter checks. Target: verifyToken at most 1.3x jwtVerify.
// The "request" group runs a request through identityMiddleware (verify, validate the identity,
// bind it) beside a hand-written jose middleware; the "rejected" group audits a client's
// repeated bad requests (first written, the rest counted) beside the same middleware with every
// rejection in a window of its own, one append each, as before aggregation.
// Run: deno bench -A bench/identity_bench.ts
import { AsyncLocalStorage } from "node:async_hooks";
import * as jose from "jose";
import { FakeClock } from "../shared/mod.ts";
import { AuditLog } from "../control_plane/audit/audit_log.ts";
import { openStore } from "../control_plane/store/open.ts";
import {
  Hs256JwtIdentityProvider,
  identityMiddleware,
  requireIdentity,
} from "../control_plane/identity/public.ts";

const SECRET = "bench-secret-of-at-least-32-bytes-long!!";
const NOW_MS = Date.UTC(2026, 10, 25, 10, 0, 0);
const clock = new FakeClock(NOW_MS);
const currentDate = new Date(NOW_MS);

const provider = new Hs256JwtIdentityProvider({
  secret: SECRET,
  issuer: "https://plm.example",
  audience: "plm-api",
  clock,
  generateId: () => "bench-jti",
});
const key = await crypto.subtle.importKey(
  "raw",
  new TextEncoder().encode(SECRET),
  { name: "HMAC", hash: "SHA-256" },
  false,
  ["sign", "verify"],
);
const token = await provider.issueToken({
  subject: "alice",
  actorKind: "human",
  roles: ["approver", "viewer"],
  scopes: ["runs:read", "runs:write"],
  tenant: "acme",
});
// The target is set against plain jwtVerify; the second jose entry does the claim checks
// verifyToken also does (iss, aud, typ, required claims), for a like-for-like figure.
const plainOptions: jose.JWTVerifyOptions = { algorithms: ["HS256"], currentDate };
const checkedOptions: jose.JWTVerifyOptions = {
  ...plainOptions,
  issuer: "https://plm.example",
  audience: "plm-api",
  typ: "JWT",
  requiredClaims: ["sub", "iat", "exp"],
};

// Both sides must accept the same token before their speed means anything; the
// provider's key is imported by now (warm), as it is on a server's hot path.
const ours = await provider.verifyToken(token);
for (const options of [plainOptions, checkedOptions]) {
  const theirs = await jose.jwtVerify(token, key, options);
  if (ours.subject !== theirs.payload.sub) {
    throw new Error("Cannot compare: the verifiers disagree");
  }
}

let sink: unknown;

Deno.bench({
  name: "jose.jwtVerify (plain: HS256 only)",
  group: "verify",
  baseline: true,
  async fn() {
    sink = await jose.jwtVerify(token, key, plainOptions);
  },
});

Deno.bench({
  name: "jose.jwtVerify (+ iss, aud, typ, required claims)",
  group: "verify",
  async fn() {
    sink = await jose.jwtVerify(token, key, checkedOptions);
  },
});

Deno.bench({
  name: "Hs256JwtIdentityProvider.verifyToken",
  group: "verify",
  async fn() {
    sink = await provider.verifyToken(token);
  },
});

Deno.bench({
  name: "jose.SignJWT (HS256, same claims)",
  group: "issue",
  baseline: true,
  async fn() {
    const iat = Math.floor(NOW_MS / 1000);
    sink = await new jose.SignJWT({
      sub: "alice",
      actor_kind: "human",
      roles: ["approver", "viewer"],
      scope: "runs:read runs:write",
      tenant: "acme",
      iss: "https://plm.example",
      aud: "plm-api",
      iat,
      exp: iat + 3600,
      jti: "bench-jti",
    }).setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(key);
  },
});

Deno.bench({
  name: "Hs256JwtIdentityProvider.issueToken",
  group: "issue",
  async fn() {
    sink = await provider.issueToken({
      subject: "alice",
      actorKind: "human",
      roles: ["approver", "viewer"],
      scopes: ["runs:read", "runs:write"],
      tenant: "acme",
    });
  },
});

const info = { remoteAddr: { transport: "tcp", hostname: "10.0.0.7", port: 40_000 } } as const;
const authorized = new Request("http://localhost/v1/runs", {
  headers: { authorization: `Bearer ${token}` },
});
const viaMiddleware = identityMiddleware(provider, { clock })(() =>
  new Response(requireIdentity().subject)
);
const storage = new AsyncLocalStorage<jose.JWTPayload>();
const viaJose = async (request: Request): Promise<Response> => {
  const header = request.headers.get("authorization") ?? "";
  try {
    const { payload } = await jose.jwtVerify(header.slice(7), key, checkedOptions);
    return storage.run(payload, () => new Response(storage.getStore()?.sub));
  } catch {
    return new Response(null, { status: 401 });
  }
};
if ((await (await viaMiddleware(authorized, info)).text()) !== "alice") {
  throw new Error("ours refused");
}
if ((await (await viaJose(authorized)).text()) !== "alice") throw new Error("jose refused");

Deno.bench({
  name: "jose.jwtVerify + AsyncLocalStorage (hand-written middleware)",
  group: "request",
  baseline: true,
  async fn() {
    sink = await viaJose(authorized);
  },
});

Deno.bench({
  name: "identityMiddleware (verify, validate, bind)",
  group: "request",
  async fn() {
    sink = await viaMiddleware(authorized, info);
  },
});

// Rejections of one client on a file database, as a server writes them.
const dir = Deno.makeTempDirSync();
const db = await openStore(`${dir}/audit.db`);
const audit = new AuditLog(db);
const unauthorized = () => new Request("http://localhost/v1/runs", { method: "POST" });
const noTimer = () => () => {};
// Every rejection in a window of its own: one append per request, as before aggregation.
const spread = new FakeClock(NOW_MS);
const rejectEach = identityMiddleware(provider, { audit, clock: spread, timer: noTimer })(() =>
  new Response("never")
);
// One client's rejections within a minute: the first is appended, the rest counted.
const rejectAggregated = identityMiddleware(provider, { audit, clock, timer: noTimer })(() =>
  new Response("never")
);

Deno.bench({
  name: "identityMiddleware rejection, one append each (before aggregation)",
  group: "rejected",
  baseline: true,
  async fn() {
    spread.advance(60_000);
    sink = await rejectEach(unauthorized(), info);
  },
});

Deno.bench({
  name: "identityMiddleware rejection, aggregated",
  group: "rejected",
  async fn() {
    sink = await rejectAggregated(unauthorized(), info);
  },
});

globalThis.addEventListener("unload", () => {
  void db.close();
  Deno.removeSync(dir, { recursive: true });
  if (sink === undefined) throw new Error("benchmarks produced nothing");
});
