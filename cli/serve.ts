/**
 * `plm serve`: the HTTP API (`server/`) on `Deno.serve`, until SIGTERM or
 * SIGINT; then it stops accepting, lets requests in flight finish within the
 * grace period, and exits 0.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  AuditLog,
  ControlPlane,
  followPolicies,
  identityMiddleware,
  loadPolicySet,
  MIGRATIONS,
  openStore,
  type PolicySet,
  PolicyStore,
  sleep,
  type Store,
  systemTimer,
} from "../control_plane/mod.ts";
import { POSTGRES_MIGRATIONS } from "../control_plane/store/postgres/mod.ts";
import {
  createApp,
  DEFAULT_MAX_BODY_BYTES,
  inboxRoutes,
  openApiDocument,
  trackInFlight,
} from "../server/mod.ts";
import { KEY_OPTIONS, keyArgs, makeProvider } from "./auth.ts";
import { type CliCommand, parseCount, readArgumentFile, storeLocation, UsageError } from "./io.ts";

const HELP = `plm serve: the HTTP API (runs, approvals, audit) over the store

USAGE:
  plm serve [--db LOCATION] [--hostname H] [--port P] [options]
  plm serve --openapi

  Prints 'listening on http://H:P' once it accepts requests. Every /v1 route needs a
  bearer token (plm auth issue-token); GET /openapi.json is the API's OpenAPI 3.1
  document. SIGTERM or SIGINT: stop accepting (new requests get 503, live event
  streams end), finish requests in flight within the grace period, exit 0; a second
  signal exits 130 at once.

OPTIONS:
      --db LOCATION             A SQLite file or a postgres://user@host/db URL
                                (default: $PLM_DB, else plm.db)
      --hostname H              The address to listen on (default: 127.0.0.1)
      --port P                  The port, 0 for any free one (default: 8080)
      --max-body-bytes N        The largest request body; larger gets 413 (default: ${DEFAULT_MAX_BODY_BYTES})
      --read-timeout-seconds N  How long a request body may take to arrive; slower gets
                                408 (default: 10)
      --grace-seconds N         How long requests in flight may take after SIGTERM (default: 30)
      --policy FILE             A policy set file overriding the store's (default:
                                $PLM_POLICY, else the store's version in force, followed as
                                plm policy apply changes it; serve refuses to start with none)
      --secure-cookies          Mark the inbox's cookies Secure even when requests arrive over
                                plain http (behind a proxy that ends TLS; over https they
                                always are)
      --openapi                 Print the OpenAPI document and exit (deno task openapi)
      --secret-file PATH        The HS256 secret (default: $PLM_JWT_SECRET)
      --issuer ISS              The required issuer (default: $PLM_JWT_ISSUER)
      --audience AUD            The required audience (default: $PLM_JWT_AUDIENCE)
  -h, --help                    Show this help`;

/**
 * The `plm serve` command.
 *
 * @example Print the OpenAPI document (what `deno task openapi` writes)
 * ```ts
 * import { main } from "@tracepulse/plm-engine-core/cli";
 * import assert from "node:assert/strict";
 *
 * const out: string[] = [];
 * const io = { out: (l: string) => out.push(l), err: () => {}, readStdin: () => Promise.resolve(""), env: () => undefined };
 * assert.equal(await main(["serve", "--openapi"], io), 0);
 * assert.equal(JSON.parse(out.join("\n")).openapi, "3.1.0");
 * ```
 */
export const serveCommand: CliCommand = {
  summary: "Serve the HTTP API",
  help: HELP,
  async run(args, io) {
    const v = parse(args);
    if (v.openapi === true) {
      await using store = await openStore(":memory:");
      const app = createApp({
        store,
        verifier: { verifyToken: () => Promise.reject(new Error("not serving")) },
        policies: () => ({ rules: [] }),
        schemaVersion: MIGRATIONS.length,
      });
      io.out(JSON.stringify(openApiDocument(app), null, 2));
      return 0;
    }
    const hostname = str(v.hostname) ?? "127.0.0.1";
    const port = parseCount(str(v.port) ?? "8080", "--port", 0, 65_535);
    const maxBodyBytes = parseCount(
      str(v["max-body-bytes"]) ?? String(DEFAULT_MAX_BODY_BYTES),
      "--max-body-bytes",
      1,
    );
    const readTimeoutSeconds = parseCount(
      str(v["read-timeout-seconds"]) ?? "10",
      "--read-timeout-seconds",
      1,
      3600,
    );
    const graceSeconds = parseCount(str(v["grace-seconds"]) ?? "30", "--grace-seconds", 0, 3600);
    const policyPath = str(v.policy) ?? io.env("PLM_POLICY");
    const verifier = await makeProvider(keyArgs(v, io.env), io);
    const location = storeLocation(str(v.db), io);
    await using store = await openStore(location);
    // The policy set: the store's version in force (refusing to start without one, saying
    // how to apply one), followed as `plm policy apply` changes it; a file only overrides.
    const policyStore = new PolicyStore(store);
    const policyHolder = new ControlPlane(store, {
      policies: policyPath === undefined || policyPath === ""
        ? (await policyStore.require()).policySet
        : await readPolicies(policyPath),
    });
    await using _follower = policyPath === undefined || policyPath === ""
      ? followPolicies(policyHolder, policyStore, { intervalMs: 2_000 })
      : undefined;
    const shutdown = new AbortController();
    // Refused tokens are audited (bounded); the counts still open are written at exit.
    await using identity = identityMiddleware(verifier, { audit: new AuditLog(store) });
    // Counts requests in flight, to drain them at shutdown (the app is built just below).
    const tracker = trackInFlight((request, info) => app.fetch(request, info));
    const app = createApp({
      store,
      verifier,
      inFlight: () => tracker.inFlight,
      policies: () => policyHolder.policy,
      schemaVersion: latestSchemaVersion(store),
      maxBodyBytes,
      bodyTimeoutMs: readTimeoutSeconds * 1000,
      identity,
      signal: shutdown.signal,
      // The approvals inbox: sessions live in this process, signed with a key made at start.
      mounts: {
        "/inbox": inboxRoutes({
          controlPlane: new ControlPlane(store, { policies: { rules: [] } }),
          verifier,
          cookieSecret: crypto.getRandomValues(new Uint8Array(32)),
          ...(v["secure-cookies"] === true ? { secureCookies: true } : {}),
        }),
      },
      onError: (err) => io.err(`error: ${err instanceof Error ? err.stack ?? err.message : err}`),
    });
    const listening = Promise.withResolvers<void>();
    const server = Deno.serve({
      hostname,
      port,
      onListen: (addr) => {
        io.out(`listening on http://${addr.hostname}:${addr.port}`);
        listening.resolve();
      },
    }, tracker.fetch);
    await listening.promise;
    const signalled = Promise.withResolvers<string>();
    const signals = ["SIGTERM", "SIGINT"] as const;
    const again = Promise.withResolvers<"again">();
    let received = false;
    const handlers = signals.map((name) => {
      // The first signal starts the shutdown; a second one stops at once.
      const handler = () => {
        if (received) again.resolve("again");
        received = true;
        signalled.resolve(name);
      };
      Deno.addSignalListener(name, handler);
      return [name, handler] as const;
    });
    try {
      const name = await Promise.race([signalled.promise, server.finished.then(() => "")]);
      io.err(`${name === "" ? "server stopped" : name}: stopping (grace ${graceSeconds} s)`);
      shutdown.abort();
      const grace = new AbortController();
      const outcome = await Promise.race([
        // Deno's shutdown() cuts off bodies still arriving: drain first, then shut.
        tracker.drain().then(() => server.shutdown()).then(() => "finished" as const),
        sleep(graceSeconds * 1000, { timer: systemTimer, signal: grace.signal })
          .then(() => "grace" as const),
        again.promise,
      ]);
      grace.abort();
      if (outcome === "again") {
        io.err("second signal: stopping now");
        return 130;
      }
      io.err(
        outcome === "finished"
          ? "stopped"
          : "grace period over: requests still in flight were dropped",
      );
      return 0;
    } finally {
      for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
    }
  },
};

/** The schema version this code migrates the store to. */
function latestSchemaVersion(store: Store): number {
  return store.kind === "postgres" ? POSTGRES_MIGRATIONS.length : MIGRATIONS.length;
}

function parse(args: string[]) {
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        ...KEY_OPTIONS,
        db: { type: "string" },
        hostname: { type: "string" },
        port: { type: "string" },
        "max-body-bytes": { type: "string" },
        "read-timeout-seconds": { type: "string" },
        "grace-seconds": { type: "string" },
        policy: { type: "string" },
        openapi: { type: "boolean" },
        "secure-cookies": { type: "boolean" },
      },
    });
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    return values;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

async function readPolicies(path: string | undefined): Promise<PolicySet> {
  if (path === undefined) return { rules: [] };
  return loadPolicySet(await readArgumentFile("--policy", path));
}
