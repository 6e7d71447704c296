/**
 * Black-box: a real `plm serve` process over a SQLite file (and a PostgreSQL
 * database when `PLM_TEST_POSTGRES_URL` is set), driven over HTTP, then
 * stopped with SIGTERM.
 */
import assert from "node:assert/strict";
import { Hs256JwtIdentityProvider } from "../../control_plane/mod.ts";
import { POSTGRES_URL } from "../_postgres.ts";
import { withPostgresDatabase } from "../_postgres_database.ts";
import { POLICY, SECRET } from "./_app.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

interface Served {
  readonly base: string;
  readonly port: number;
  readonly child: Deno.ChildProcess;
  readonly stderr: Promise<string>;
  /** Resolves once stderr so far matches `pattern`. */
  stderrMatches(pattern: RegExp): Promise<void>;
}

async function startServe(location: string, dir: string): Promise<Served> {
  const policy = `${dir}/policy.json`;
  await Deno.writeTextFile(policy, JSON.stringify(POLICY));
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      CLI,
      "serve",
      "--db",
      location,
      "--port",
      "0",
      "--policy",
      policy,
      "--max-body-bytes",
      "4096",
      "--read-timeout-seconds",
      "1",
      "--grace-seconds",
      "10",
    ],
    env: { PLM_JWT_SECRET: SECRET, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let errText = "";
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  const stderr = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      errText += decoder.decode(chunk, { stream: true });
      for (const w of waiters.splice(0)) {
        if (w.pattern.test(errText)) w.resolve();
        else waiters.push(w);
      }
    }
    return errText;
  })();
  const stderrMatches = (pattern: RegExp) =>
    new Promise<void>((resolve) => {
      if (pattern.test(errText)) resolve();
      else waiters.push({ pattern, resolve });
    });
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  let base: string | undefined;
  while (base === undefined) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`plm serve exited before listening: ${await stderr}`);
    seen += value;
    base = /^listening on (http:\/\/\S+)\n/m.exec(seen)?.[1];
  }
  // Drain the rest of stdout so the process never blocks on it.
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return { base, port: Number(new URL(base).port), child, stderr, stderrMatches };
}

/** Sends headers and part of the body, then stalls: the server must answer 408 and hang up. */
async function stalledRequest(port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode(
        "POST /v1/runs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
          'Content-Length: 100\r\n\r\n{"action":',
      ),
    );
    let text = "";
    const buffer = new Uint8Array(4096);
    while (!text.includes("\r\n\r\n") || !text.includes("}")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    return text;
  } finally {
    conn.close();
  }
}

/** Sends a raw request with `Connection: close` and returns the whole answer. */
async function rawRequest(port: number, head: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(`${head}Connection: close\r\n\r\n`));
    return await new Response(conn.readable).text();
  } catch (err) {
    conn.close();
    throw err;
  }
}

async function scenario(location: string): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "plm_serve_" });
  const served = await startServe(location, dir);
  const { base } = served;
  try {
    const provider = new Hs256JwtIdentityProvider({ secret: SECRET });
    const alice = await provider.issueToken({ subject: "alice", actorKind: "human", roles: [] });
    const bob = await provider.issueToken({ subject: "bob", actorKind: "human", roles: ["lead"] });
    const call = async (method: string, path: string, token?: string, body?: unknown) => {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: {
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, type: res.headers.get("content-type"), body: await res.json() };
    };

    assert.equal((await call("GET", "/healthz")).status, 200);
    assert.equal((await call("GET", "/readyz")).status, 200);
    const anonymous = await call("POST", "/v1/runs", undefined, { action: "bom.read" });
    assert.deepEqual([anonymous.status, anonymous.type, anonymous.body.code], [
      401,
      "application/problem+json",
      "ERR_TOKEN_MISSING",
    ]);

    // Submit, read, list.
    const submitted = await call("POST", "/v1/runs", alice, {
      action: "bom.read",
      resource: "bom:1",
    });
    assert.equal(submitted.status, 201);
    const run = submitted.body;
    assert.equal(run.state, "queued");
    assert.equal(run.traceparent.slice(3, 35), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert.deepEqual((await call("GET", `/v1/runs/${run.id}`, alice)).body, run);
    const page = await call("GET", "/v1/runs?limit=5", alice);
    assert.deepEqual(page.body.items.map((r: { id: string }) => r.id), [run.id]);
    const invalid = await call("POST", "/v1/runs", alice, { action: "bom.read" });
    assert.deepEqual([invalid.status, invalid.body.field], [422, "resource"]);

    // Approve through the API.
    const release = (await call("POST", "/v1/runs", alice, {
      action: "bom.release",
      resource: "bom:2",
    })).body;
    assert.equal(release.state, "awaiting_approval");
    const [approval] = (await call("GET", "/v1/approvals?state=pending", bob)).body.items;
    assert.equal(approval.runId, release.id);
    const self = await call("POST", `/v1/approvals/${approval.id}/decisions`, alice, {
      decision: "approve",
      digest: approval.digest,
    });
    assert.deepEqual([self.status, self.body.code], [403, "ERR_APPROVAL_SELF"]);
    const decided = await call("POST", `/v1/approvals/${approval.id}/decisions`, bob, {
      decision: "approve",
      digest: approval.digest,
    });
    assert.equal(decided.status, 200);
    assert.deepEqual([decided.body.approval.state, decided.body.run.state], ["approved", "queued"]);

    // Limits: a body over --max-body-bytes, declared or chunked; a client that stalls.
    const big = JSON.stringify({ action: "bom.read", resource: "bom:3", input: "x".repeat(5000) });
    const declared = await fetch(`${base}/v1/runs`, {
      method: "POST",
      headers: { authorization: `Bearer ${alice}`, "content-type": "application/json" },
      body: big,
    });
    assert.deepEqual([declared.status, (await declared.json()).code], [
      413,
      "ERR_INVALID_ARGUMENT",
    ]);
    const bytes = new TextEncoder().encode(big);
    const chunked = await fetch(`${base}/v1/runs`, {
      method: "POST",
      headers: { authorization: `Bearer ${alice}`, "content-type": "application/json" },
      body: new ReadableStream({
        start(c) {
          for (let i = 0; i < bytes.length; i += 1000) c.enqueue(bytes.slice(i, i + 1000));
          c.close();
        },
      }),
    });
    assert.deepEqual([chunked.status, (await chunked.json()).code], [413, "ERR_INVALID_ARGUMENT"]);
    const twice = await rawRequest(
      served.port,
      `GET /v1/runs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${alice}\r\n` +
        `Authorization: Bearer ${bob}\r\n`,
    );
    assert.match(twice, /^HTTP\/1\.1 401 /);
    assert.match(twice, /"code":"ERR_TOKEN_MALFORMED"/);
    const twoKeys = await rawRequest(
      served.port,
      `POST /v1/runs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${alice}\r\n` +
        "Idempotency-Key: a\r\nIdempotency-Key: b\r\nContent-Length: 0\r\n",
    );
    assert.match(twoKeys, /^HTTP\/1\.1 422 /);
    assert.match(twoKeys, /"field":"Idempotency-Key"/);
    const stalled = await stalledRequest(served.port);
    assert.match(stalled, /^HTTP\/1\.1 408 /);
    assert.match(stalled, /"code":"ERR_TIMEOUT"/);

    // Cancel: governed.
    const forbidden = await call("POST", `/v1/runs/${run.id}/cancel`, bob, {});
    assert.deepEqual([forbidden.status, forbidden.body.code], [403, "ERR_FORBIDDEN"]);
    const cancelled = await call("POST", `/v1/runs/${run.id}/cancel`, alice, { reason: "Done" });
    assert.deepEqual([cancelled.status, cancelled.body.state], [200, "cancelled"]);
    const events = await fetch(`${base}/v1/runs/${run.id}/events`, {
      headers: { authorization: `Bearer ${alice}`, accept: "text/event-stream" },
    });
    const stream = await events.text();
    assert.match(stream, /event: audit\n/);
    assert.match(stream, /event: end\ndata: \{"id":/);

    // SIGTERM with a live event stream open: the stream ends cleanly, the process exits 0.
    const live = await fetch(`${base}/v1/runs/${release.id}/events`, {
      headers: { authorization: `Bearer ${alice}`, accept: "text/event-stream" },
    });
    assert.ok(live.body !== null);
    const liveReader = live.body.getReader();
    assert.equal((await liveReader.read()).done, false);
    // And a submit in flight: its body half sent when the signal comes, finished after.
    const body = JSON.stringify({ action: "bom.read", resource: "bom:in-flight" });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: served.port });
    await conn.write(
      new TextEncoder().encode(
        `POST /v1/runs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${alice}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
          `Connection: close\r\n\r\n${body.slice(0, 10)}`,
      ),
    );
    // Wait until the server handles it (it counts itself too), so the signal comes mid-body.
    let handled = false;
    for (let i = 0; i < 200 && !handled; i++) {
      handled = (await (await fetch(`${base}/healthz`)).json()).inFlight >= 2;
    }
    assert.ok(handled, "the half-sent request never reached the app");
    served.child.kill("SIGTERM");
    await served.stderrMatches(/SIGTERM: stopping/);
    // No longer accepting: a new request is refused (503 while draining, or no connection).
    const late = await fetch(`${base}/healthz`).then((r) => r.status, () => "refused");
    assert.ok(late === 503 || late === "refused", String(late));
    await conn.write(new TextEncoder().encode(body.slice(10)));
    const inFlight = await new Response(conn.readable).text();
    assert.match(inFlight, /^HTTP\/1\.1 201 /);
    assert.match(inFlight, /"resource":"bom:in-flight"/);
    while (!(await liveReader.read()).done) { /* the rest, until the server ends it */ }
    const status = await served.child.status;
    assert.equal(status.code, 0, await served.stderr);
    assert.match(await served.stderr, /SIGTERM: stopping[\s\S]*\nstopped\n/);
  } finally {
    try {
      served.child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await served.child.status;
    await served.stderr;
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("plm serve over a SQLite file: submit, approve, read, limits, cancel, SIGTERM exits 0", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plm_serve_db_" });
  try {
    await scenario(`${dir}/plm.db`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

if (POSTGRES_URL !== undefined) {
  const url = POSTGRES_URL;
  Deno.test("plm serve over PostgreSQL: submit, approve, read, limits, cancel, SIGTERM exits 0", async () => {
    await withPostgresDatabase(url, scenario);
  });
}
