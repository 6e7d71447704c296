/**
 * Service-level scenarios run against any store, the way
 * `tests/store/conformance.ts` runs the repositories: concurrent callers on
 * one store (racing creates with one idempotency key, racing approvers,
 * racing authorizations of one agent, writers then the sealer), so that an
 * engine whose transactions run side by side (PostgreSQL) is held to what
 * SQLite's turn-taking gives for free. `servicesOnStore(engine, open)`
 * registers `[${engine}] ...` tests; each opens a fresh store and closes it.
 */
import assert from "node:assert/strict";
import {
  AuditLog,
  ControlPlane,
  FakeClock,
  isPlmError,
  RunStore,
  type Store,
} from "../../control_plane/mod.ts";
import { ACTOR, ALICE, task, TRACEPARENT } from "./_runs_fixture.ts";
import { entry } from "./_audit_fixture.ts";

/** Registers the service scenarios on stores from `open`. */
export function servicesOnStore(engine: string, open: () => Promise<Store>): void {
  const test = (name: string, fn: (store: Store) => Promise<void>) =>
    Deno.test({
      name: `[${engine}] ${name}`,
      sanitizeResources: false, // a pooled driver may keep its sockets until close settles
      async fn() {
        await using store = await open();
        await fn(store);
      },
    });

  test("RunStore: racing creates with one idempotency key make one run", async (store) => {
    const clock = new FakeClock(Date.UTC(2026, 10, 25));
    const audit = new AuditLog(store, { clock });
    const runs = new RunStore(store, { audit, clock });
    const input = { task: task(), requester: ALICE, traceparent: TRACEPARENT, idempotencyKey: "k" };
    const results = await Promise.all(Array.from({ length: 6 }, () => runs.create(input)));
    assert.equal(results.filter((r) => r.created).length, 1);
    assert.equal(new Set(results.map((r) => r.run.id)).size, 1);
    assert.equal((await audit.list({ actionPrefix: "run.created" })).length, 1);
  });

  test("RunStore: a lease lost to a reclaim fences every write of the old holder", async (store) => {
    const clock = new FakeClock(Date.UTC(2026, 10, 25));
    const audit = new AuditLog(store, { clock });
    const runs = new RunStore(store, { audit, clock });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      clock.advance(1);
      ids.push(
        (await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT })).run.id,
      );
    }
    const claimed = await runs.claim(ids[0]!, "w1", 1_000, { actor: ACTOR });
    const hold = { owner: "w1", token: claimed.lease!.token };
    await runs.apply(ids[0]!, { type: "start", agentId: "a" }, { actor: ACTOR, lease: hold });
    // Two workers claim the rest at once: no run is taken twice.
    const [mine, theirs] = await Promise.all([
      runs.claimReady("w2", 1_000, 2),
      runs.claimReady("w3", 1_000, 2),
    ]);
    const taken = [...mine!, ...theirs!].map((run) => run.id).sort();
    assert.deepEqual(taken, ids.slice(1).sort());
    clock.advance(1_000);
    const reclaimed = await runs.reclaimExpired(undefined, { actor: ACTOR });
    assert.equal(reclaimed.find((run) => run.id === ids[0])?.state, "retrying");
    const head = await audit.head();
    const lost = (err: unknown) => isPlmError(err, "ERR_RUN_LEASE_LOST");
    await assert.rejects(runs.heartbeat(ids[0]!, hold, 1_000), lost);
    await assert.rejects(
      runs.apply(ids[0]!, { type: "succeed", result: 1 }, { actor: ACTOR, lease: hold }),
      lost,
    );
    await assert.rejects(runs.release(ids[0]!, hold, { actor: ACTOR }), lost);
    assert.deepEqual(await audit.head(), head, "nothing written under the lost lease");
    assert.equal((await audit.verify()).ok, true);
  });

  test("ApprovalService: racing approvers are tallied one after the other", async (store) => {
    const clock = new FakeClock(Date.UTC(2026, 10, 25));
    const cp = new ControlPlane(store, { policies: { rules: [] }, clock });
    const { run } = await cp.runs.create({
      task: task({ action: "bom.release" }),
      requester: ALICE,
      traceparent: TRACEPARENT,
    });
    const spec = {
      approverRoles: ["lead"],
      quorum: 2,
      timeoutSeconds: 60,
      onExpiry: "deny",
    } as const;
    const { approval } = await cp.requestApproval(run.id, spec, { actor: ACTOR });
    const lead = (subject: string) =>
      ({ subject, actorKind: "human", roles: ["lead"], scopes: [] }) as const;
    const results = await Promise.allSettled(
      ["ann", "bob", "cat", "ann", "dan"].map((subject) =>
        cp.decideApproval(approval.id, "approve", {
          identity: lead(subject),
          digest: approval.digest,
        })
      ),
    );
    const codes = results.map((r) =>
      r.status === "fulfilled" ? "ok" : isPlmError(r.reason) ? r.reason.code : String(r.reason)
    );
    assert.equal(codes.filter((code) => code === "ok").length, 2, codes.join(", "));
    assert.ok(
      codes.every((code) => /^(ok|ERR_APPROVAL_DUPLICATE|ERR_APPROVAL_NOT_PENDING)$/.test(code)),
      codes.join(", "),
    );
    const after = await cp.approvals.get(approval.id);
    assert.deepEqual([after.state, after.votes.length], ["approved", 2]);
    assert.equal((await cp.runs.get(run.id)).state, "queued");
    assert.equal((await cp.audit.list({ actionPrefix: "approval.approved" })).length, 1);
    assert.equal((await cp.audit.verify()).ok, true);
  });

  test("ControlPlane: racing authorizations of one agent count its window and streak once", async (store) => {
    const cp = new ControlPlane(store, {
      policies: { rules: [{ id: "edit", effect: "allow", actions: ["bom.update"] }] },
      clock: new FakeClock(Date.UTC(2026, 10, 25)),
      autonomy: { defaultLevel: "L4" },
      agentRateLimit: { maxRuns: 5, windowMs: 60_000 },
    });
    const agent = { subject: "agent-7", actorKind: "agent", roles: [], scopes: [] } as const;
    const edits = await Promise.all(
      Array.from(
        { length: 12 },
        (_, i) => cp.authorize({ identity: agent, action: "bom.update", resource: `bom:${i}` }),
      ),
    );
    assert.equal(edits.filter((v) => v.decision === "allow").length, 5);
    await Promise.all(
      Array.from(
        { length: 3 },
        () => cp.authorize({ identity: agent, action: "bom.delete", resource: "bom:1" }),
      ),
    );
    assert.equal(await cp.autonomy?.levelOf("agent-7"), "L3");
    assert.equal((await cp.audit.list({ actionPrefix: "autonomy.level.changed" })).length, 1);
    assert.equal((await cp.audit.verify()).ok, true);
  });

  test("AuditLog: concurrent writers, then one chain from genesis", async (store) => {
    const audit = new AuditLog(store, { clock: new FakeClock(0) });
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; i < 50; i++) await audit.append(entry(w * 1_000 + i));
      }),
    );
    const records = await audit.list();
    assert.deepEqual(records.map((r) => r.seq), Array.from({ length: 400 }, (_, i) => i + 1));
    for (let w = 0; w < 8; w++) {
      const mine = records.map((r) => (r.data as { i: number }).i).filter((i) =>
        Math.floor(i / 1_000) === w
      );
      assert.deepEqual(
        mine,
        Array.from({ length: 50 }, (_, i) => w * 1_000 + i),
        "each writer's order",
      );
    }
    const result = await audit.verify();
    assert.deepEqual([result.ok, result.checked, result.sealedThrough, result.pending], [
      true,
      400,
      400,
      0,
    ]);
  });
}
