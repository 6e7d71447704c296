/**
 * A second process that asks for agent runs on a shared file database:
 * `deno run -A _budget_worker.ts DB NOW MAX_RUNS TRIES`. It prints `ready`, waits for a line on
 * stdin, then calls `ControlPlane.authorize()` TRIES times at the fixed time NOW and prints
 * `allowed N`.
 */
import { ControlPlane, openStore } from "../../control_plane/mod.ts";
import { FakeClock } from "../../shared/mod.ts";

const [path, now, maxRuns, tries] = Deno.args;
await using store = await openStore(path!);
const cp = new ControlPlane(store, {
  policies: { rules: [{ id: "edit", effect: "allow", actions: ["bom.update"] }] },
  clock: new FakeClock(Number(now)),
  agentRateLimit: { maxRuns: Number(maxRuns), windowMs: 3_600_000 },
});
console.log("ready");
await Deno.stdin.readable.getReader().read();
const identity = { subject: "agent-7", actorKind: "agent", roles: [], scopes: [] } as const;
let allowed = 0;
for (let i = 0; i < Number(tries); i++) {
  const verdict = await cp.authorize({ identity, action: "bom.update", resource: `bom:${i}` });
  if (verdict.decision === "allow") allowed++;
}
console.log(`allowed ${allowed}`);
