/**
 * `ControlPlane.authorize()` for agent requesters on a file database (WAL,
 * `synchronous = NORMAL`), with and without the governance state it keeps in
 * the database (ADR 0007): autonomy drops and streaks, agent run windows. The
 * baseline is the same decision with policies only (decide + one audit record
 * in one transaction).
 *
 * - `policies only`: the baseline;
 * - `+ autonomy`: one indexed read of the agent's autonomy state per decision;
 * - `+ autonomy + 1,000 runs/min per agent`: 50 agents in turn, the clock 10 ms
 *   on per call, so each window holds about 120 starts and every call prunes
 *   and inserts one (the realistic case);
 * - `window full: every call refused`: one agent at its limit (count, then one
 *   read for `retryAfterMs`), the worst case of a consume;
 * - `denied: streak write per call`: a denial with autonomy records the
 *   outcome (an upsert; a drop and its audit record every third call until the floor).
 *
 * ```sh
 * deno bench -A bench/authorize_bench.ts
 * ```
 *
 * @module
 */
import { type AuthorizeRequest, ControlPlane, openStore } from "../control_plane/mod.ts";
import { FakeClock, type Identity } from "../shared/mod.ts";

const POLICIES = { rules: [{ id: "edit", effect: "allow" as const, actions: ["bom.update"] }] };
const AGENTS: Identity[] = Array.from({ length: 50 }, (_, i) => ({
  subject: `agent-${i}`,
  actorKind: "agent",
  roles: [],
  scopes: [],
}));

const dir = Deno.makeTempDirSync({ prefix: "plm_authorize_bench_" });
const closers: (() => Promise<void>)[] = [];
globalThis.addEventListener("unload", () => {
  closers.forEach((close) => void close());
  Deno.removeSync(dir, { recursive: true });
});

async function controlPlane(
  name: string,
  clock: FakeClock,
  options: Partial<ConstructorParameters<typeof ControlPlane>[1]>,
): Promise<ControlPlane> {
  const store = await openStore(`${dir}/${name}.db`);
  closers.push(() => store.close());
  return new ControlPlane(store, { policies: POLICIES, clock, ...options });
}

/** One authorize call per iteration, for agent `n mod 50`, the clock `step` ms on each time. */
function bench(
  name: string,
  cp: ControlPlane,
  clock: FakeClock,
  request: (agent: Identity) => AuthorizeRequest,
  options: { step?: number; agents?: number; baseline?: boolean; expect: string },
): void {
  const { step = 10, agents = AGENTS.length, baseline = false, expect } = options;
  let n = 0;
  Deno.bench({
    name,
    group: "authorize, agent requester (file, WAL, NORMAL)",
    baseline,
    async fn() {
      const verdict = await cp.authorize(request(AGENTS[n++ % agents]!));
      clock.advance(step);
      if (verdict.decision !== expect) throw new Error(`${name}: ${verdict.reason}`);
    },
  });
}

const edit = (identity: Identity): AuthorizeRequest => ({
  identity,
  action: "bom.update",
  resource: "bom:42",
});
const remove = (identity: Identity): AuthorizeRequest => ({
  identity,
  action: "bom.delete",
  resource: "bom:42",
});
const autonomy = { defaultLevel: "L4" } as const;
const rate = { maxRuns: 1_000, windowMs: 60_000 };

const clocks = Array.from({ length: 5 }, () => new FakeClock(Date.UTC(2026, 10, 30)));
bench("policies only", await controlPlane("plain", clocks[0]!, {}), clocks[0]!, edit, {
  baseline: true,
  expect: "allow",
});
bench("+ autonomy", await controlPlane("autonomy", clocks[1]!, { autonomy }), clocks[1]!, edit, {
  expect: "allow",
});
bench(
  "+ autonomy + 1,000 runs/min per agent",
  await controlPlane("rate", clocks[2]!, { autonomy, agentRateLimit: rate }),
  clocks[2]!,
  edit,
  { expect: "allow" },
);
const full = await controlPlane("full", clocks[3]!, {
  agentRateLimit: { maxRuns: 100, windowMs: 60_000 },
});
for (let i = 0; i < 100; i++) await full.authorize(edit(AGENTS[0]!));
bench("window full: every call refused", full, clocks[3]!, edit, {
  step: 0,
  agents: 1,
  expect: "deny",
});
bench(
  "denied: streak write per call",
  await controlPlane("denied", clocks[4]!, { autonomy }),
  clocks[4]!,
  remove,
  { expect: "deny" },
);
