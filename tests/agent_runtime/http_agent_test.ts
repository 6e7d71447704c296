import assert from "node:assert/strict";
import {
  type AgentContext,
  AgentError,
  FakeClock,
  FakeTimers,
  formatTraceparent,
  httpAgent,
  type HttpAgentOptions,
  isPlmError,
  parseRetryAfter,
  type RunTask,
  type TraceContext,
  TraceState,
} from "../../agent_runtime/mod.ts";

const TASK: RunTask = {
  action: "bom.update",
  resource: "bom:42",
  capabilities: ["bom.write"],
  input: { part: "P-1", qty: 3 },
  risk: "medium",
  attributes: { plant: "north" },
};

const TRACE: TraceContext = {
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  spanId: "00f067aa0ba902b7",
  traceFlags: 1,
  traceState: TraceState.from([["rojo", "00f067aa0ba902b7"], ["congo", "t61rcWkgMzE"]]),
};

const NOW = Date.UTC(2026, 10, 25, 10, 0, 0);

function context(overrides: Partial<AgentContext> = {}): AgentContext {
  return {
    signal: new AbortController().signal,
    deadline: NOW + 5_000,
    attempt: 2,
    identity: { subject: "svc-planner", actorKind: "service", roles: [], scopes: ["bom:write"] },
    trace: TRACE,
    runId: "run-1",
    idempotencyKey: "idem-run-1",
    ...overrides,
  };
}

interface Seen {
  headers: Headers;
  body: unknown;
}

/** How long a held request waits before it answers 200 anyway (so a broken abort fails the test). */
const HOLD_MS = 5_000;

/**
 * Serves `handler` on 127.0.0.1 at a free port for the duration of `fn`,
 * recording what each request carried; shuts the server down afterwards.
 * `hold()` keeps a request open until the test ends (or `HOLD_MS` passes).
 */
async function withServer(
  handler: (req: Request, hold: () => Promise<void>) => Response | Promise<Response>,
  fn: (url: string, seen: Seen[]) => Promise<void>,
): Promise<void> {
  const seen: Seen[] = [];
  const done = Promise.withResolvers<void>();
  const hold = async () => {
    let id: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([done.promise, new Promise((resolve) => id = setTimeout(resolve, HOLD_MS))]);
    clearTimeout(id);
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    seen.push({ headers: req.headers, body: await req.json().catch(() => undefined) });
    return handler(req, hold);
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/agent`, seen);
  } finally {
    done.resolve();
    await server.shutdown();
  }
}

function agentFor(url: string, options: Partial<HttpAgentOptions> = {}) {
  return httpAgent(url, {
    id: "planner-http",
    capabilities: ["bom.write"],
    clock: new FakeClock(NOW),
    ...options,
  });
}

async function failure(promise: Promise<unknown>): Promise<AgentError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof AgentError, `expected an AgentError, got ${error}`);
    return error;
  }
  assert.fail("expected invoke() to fail");
}

Deno.test("httpAgent() POSTs the task and returns the JSON answer", async () => {
  await withServer(
    () => Response.json({ updated: true, lines: [1, 2] }),
    async (url, seen) => {
      const agent = agentFor(url, { token: "s3cret" });
      const result = await agent.invoke(TASK, context());
      assert.deepEqual(result, { updated: true, lines: [1, 2] });
      assert.equal(seen.length, 1);
      assert.deepEqual(seen[0]?.body, {
        task: TASK,
        runId: "run-1",
        attempt: 2,
        idempotencyKey: "idem-run-1",
      });
    },
  );
});

Deno.test("httpAgent() propagates trace, auth and idempotency headers", async (t) => {
  for (
    const [name, token] of [
      ["a string token", "tok-1"],
      ["a token function", () => "tok-1"],
      ["an async token function", () => Promise.resolve("tok-1")],
    ] as const
  ) {
    await t.step(name, async () => {
      await withServer(() => Response.json(null), async (url, seen) => {
        await agentFor(url, { token }).invoke(TASK, context());
        const headers = seen[0]?.headers;
        assert.ok(headers !== undefined);
        assert.equal(headers.get("traceparent"), formatTraceparent(TRACE));
        assert.equal(
          headers.get("traceparent"),
          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        assert.equal(headers.get("tracestate"), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        assert.equal(headers.get("authorization"), "Bearer tok-1");
        assert.equal(headers.get("idempotency-key"), "idem-run-1");
        assert.equal(headers.get("content-type"), "application/json");
      });
    });
  }
  await t.step("no token: no Authorization header; no tracestate when empty", async () => {
    await withServer(() => Response.json(null), async (url, seen) => {
      await agentFor(url).invoke(
        TASK,
        context({ trace: { ...TRACE, traceState: TraceState.EMPTY } }),
      );
      assert.equal(seen[0]?.headers.get("authorization"), null);
      assert.equal(seen[0]?.headers.get("tracestate"), null);
    });
  });
});

Deno.test("httpAgent() returns null for an empty 2xx answer", async () => {
  await withServer(() => new Response(null, { status: 204 }), async (url) => {
    assert.equal(await agentFor(url).invoke(TASK, context()), null);
  });
});

Deno.test("httpAgent() maps a 5xx answer to a retryable ERR_AGENT_FAILED", async (t) => {
  await t.step("500", async () => {
    await withServer(() => new Response("boom", { status: 500 }), async (url) => {
      const err = await failure(agentFor(url).invoke(TASK, context()));
      assert.equal(err.code, "ERR_AGENT_FAILED");
      assert.equal(err.retryable, true);
      assert.equal(err.retryAfterMs, undefined);
      assert.match(err.message, /500/);
    });
  });
  await t.step("503 with Retry-After", async () => {
    await withServer(
      () => new Response(null, { status: 503, headers: { "retry-after": "2" } }),
      async (url) => {
        const err = await failure(agentFor(url).invoke(TASK, context()));
        assert.equal(err.retryable, true);
        assert.equal(err.retryAfterMs, 2_000);
      },
    );
  });
});

Deno.test("httpAgent() maps 429 to retryable with Retry-After", async (t) => {
  await t.step("delay-seconds", async () => {
    await withServer(
      () => new Response(null, { status: 429, headers: { "retry-after": "7" } }),
      async (url) => {
        const err = await failure(agentFor(url).invoke(TASK, context()));
        assert.equal(err.code, "ERR_AGENT_FAILED");
        assert.equal(err.retryable, true);
        assert.equal(err.retryAfterMs, 7_000);
      },
    );
  });
  await t.step("an HTTP-date, relative to the injected clock", async () => {
    const at = new Date(NOW + 30_000).toUTCString();
    await withServer(
      () => new Response(null, { status: 429, headers: { "retry-after": at } }),
      async (url) => {
        const err = await failure(agentFor(url).invoke(TASK, context()));
        assert.equal(err.retryAfterMs, 30_000);
      },
    );
  });
  await t.step("no Retry-After", async () => {
    await withServer(() => new Response(null, { status: 429 }), async (url) => {
      const err = await failure(agentFor(url).invoke(TASK, context()));
      assert.equal(err.retryable, true);
      assert.equal(err.retryAfterMs, undefined);
    });
  });
});

Deno.test("httpAgent() maps other 4xx answers to not retryable", async () => {
  for (const status of [400, 401, 403, 404, 422]) {
    await withServer(() => new Response("no", { status }), async (url) => {
      const err = await failure(agentFor(url).invoke(TASK, context()));
      assert.equal(err.code, "ERR_AGENT_FAILED", String(status));
      assert.equal(err.retryable, false, String(status));
    });
  }
});

Deno.test("httpAgent() refuses a 2xx body that is not JSON, for good", async () => {
  await withServer(() => new Response("<html>"), async (url) => {
    const err = await failure(agentFor(url).invoke(TASK, context()));
    assert.equal(err.code, "ERR_AGENT_FAILED");
    assert.equal(err.retryable, false);
  });
});

Deno.test("httpAgent() aborts the request at the deadline with a retryable ERR_TIMEOUT", async () => {
  await withServer(
    async (_req, hold) => {
      await hold(); // answers only after the test (a client that did not abort gets a 200)
      return Response.json("too late");
    },
    async (url, seen) => {
      const clock = new FakeClock(NOW);
      const agent = agentFor(url, { clock });
      const started = performance.now();
      const err = await failure(agent.invoke(TASK, context({ deadline: NOW + 50 })));
      assert.equal(err.code, "ERR_TIMEOUT");
      assert.equal(err.retryable, true);
      assert.equal(seen.length, 1, "the request reached the server");
      assert.ok(
        performance.now() - started < HOLD_MS,
        "the client gave up before the server answered",
      );
    },
  );
});

Deno.test("httpAgent() measures the time left by the injected clock", async () => {
  let timerMs = -1;
  await withServer(() => Response.json(1), async (url, seen) => {
    const clock = new FakeClock(NOW + 4_000);
    const agent = agentFor(url, {
      clock,
      timer: (callback, ms) => {
        timerMs = ms;
        const id = setTimeout(callback, ms);
        return () => clearTimeout(id);
      },
    });
    await agent.invoke(TASK, context());
    assert.equal(timerMs, 1_000);
    clock.set(NOW + 5_000);
    const err = await failure(agent.invoke(TASK, context()));
    assert.equal(err.code, "ERR_TIMEOUT");
    assert.equal(err.retryable, true);
    assert.equal(seen.length, 1, "no request once the deadline has passed");
  });
});

Deno.test("httpAgent() times out by the injected timer and clock, without waiting", async () => {
  const clock = new FakeClock(NOW);
  const timers = new FakeTimers(clock);
  const agent = agentFor("https://agents.invalid/slow", {
    clock,
    timer: timers.timer,
    fetch: (_input, init) =>
      new Promise<Response>((_resolve, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
      }),
  });
  const pending = failure(agent.invoke(TASK, context({ deadline: NOW + 2_000 })));
  await timers.advance(1_999);
  assert.equal(timers.pending, 1, "not yet timed out");
  await timers.advance(1);
  const err = await pending;
  assert.equal(err.code, "ERR_TIMEOUT");
  assert.equal(err.retryable, true);
  assert.equal(timers.pending, 0);
});

Deno.test("httpAgent() stops on ctx.signal with ERR_CANCELLED, not retryable", async (t) => {
  await t.step("during the request", async () => {
    const received = Promise.withResolvers<void>();
    await withServer(
      async (_req, hold) => {
        received.resolve();
        await hold();
        return Response.json("too late");
      },
      async (url) => {
        const controller = new AbortController();
        const pending = agentFor(url).invoke(TASK, context({ signal: controller.signal }));
        await received.promise;
        controller.abort(new Error("user cancelled"));
        const err = await failure(pending);
        assert.equal(err.code, "ERR_CANCELLED");
        assert.equal(err.retryable, false);
      },
    );
  });
  await t.step("before the request", async () => {
    await withServer(() => Response.json(1), async (url, seen) => {
      const err = await failure(
        agentFor(url).invoke(TASK, context({ signal: AbortSignal.abort() })),
      );
      assert.equal(err.code, "ERR_CANCELLED");
      assert.equal(seen.length, 0);
    });
  });
});

Deno.test("httpAgent() maps a network error to a retryable ERR_AGENT_FAILED", async () => {
  let closedUrl = "";
  await withServer(() => Response.json(1), (url) => {
    closedUrl = url;
    return Promise.resolve();
  });
  const err = await failure(agentFor(closedUrl).invoke(TASK, context()));
  assert.equal(err.code, "ERR_AGENT_FAILED");
  assert.equal(err.retryable, true);
  assert.ok(err.cause !== undefined);
});

Deno.test("httpAgent() maps a failing token function to a retryable error", async () => {
  await withServer(() => Response.json(1), async (url, seen) => {
    const token = () => Promise.reject(new Error("token endpoint down"));
    const err = await failure(agentFor(url, { token }).invoke(TASK, context()));
    assert.equal(err.code, "ERR_AGENT_FAILED");
    assert.equal(err.retryable, true);
    assert.equal(seen.length, 0);
  });
});

Deno.test("httpAgent() uses an injected fetch", async () => {
  const calls: string[] = [];
  const agent = agentFor("https://agents.invalid/x", {
    fetch: (input, init) => {
      calls.push(`${init?.method} ${String(input)}`);
      return Promise.resolve(Response.json({ fake: true }));
    },
  });
  assert.deepEqual(await agent.invoke(TASK, context()), { fake: true });
  assert.deepEqual(calls, ["POST https://agents.invalid/x"]);
});

Deno.test("httpAgent() validates its arguments once", () => {
  assert.throws(() => httpAgent("not a url", { id: "a" }), TypeError);
  assert.throws(() => httpAgent("ftp://example.com/", { id: "a" }), TypeError);
  assert.throws(() => httpAgent("http://127.0.0.1/", { id: "" }), TypeError);
  assert.throws(() => httpAgent("http://127.0.0.1/", { id: "a", fetch: 1 as never }), TypeError);
  assert.throws(() => httpAgent("http://127.0.0.1/", { id: "a", token: 1 as never }), TypeError);
  assert.throws(() => httpAgent("http://127.0.0.1/", { id: "a", tier: -1 }), RangeError);
  const agent = httpAgent(new URL("http://127.0.0.1/"), { id: "a", maxConcurrency: 16, tier: 2 });
  assert.deepEqual([agent.id, agent.maxConcurrency, agent.tier], ["a", 16, 2]);
});

Deno.test("parseRetryAfter() reads seconds and HTTP-dates", () => {
  assert.equal(parseRetryAfter(null, NOW), undefined);
  assert.equal(parseRetryAfter("0", NOW), 0);
  assert.equal(parseRetryAfter(" 120 ", NOW), 120_000);
  assert.equal(parseRetryAfter("Wed, 25 Nov 2026 10:01:00 GMT", NOW), 60_000);
  assert.equal(parseRetryAfter("Wednesday, 25-Nov-26 10:00:10 GMT", NOW), 10_000);
  assert.equal(parseRetryAfter("Wed, 25 Nov 2026 09:00:00 GMT", NOW), 0, "a past date");
  for (const bad of ["", "-1", "1.5", "soon", "2026-11-25T10:01:00Z", "Wed, 25 Nov 2026"]) {
    assert.equal(parseRetryAfter(bad, NOW), undefined, bad);
  }
  assert.ok(isPlmError(new AgentError("ERR_TIMEOUT", "x"), "ERR_TIMEOUT"));
});
