// Hs256JwtIdentityProvider.verifyToken() side by side with plain jose.jwtVerify() on the same
// token and an HMAC key imported from the same secret, and issueToken() beside jose's SignJWT.
// Target: verifyToken at most 1.3x jwtVerify. Run: deno bench -A bench/identity_bench.ts
import * as jose from "jose";
import { FakeClock } from "../shared/mod.ts";
import { Hs256JwtIdentityProvider } from "../control_plane/identity/public.ts";

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

globalThis.addEventListener("unload", () => {
  if (sink === undefined) throw new Error("benchmarks produced nothing");
});
