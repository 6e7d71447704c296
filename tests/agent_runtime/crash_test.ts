import assert from "node:assert/strict";
import { allRuns } from "../_all_runs.ts";
import {
  AuditLog,
  type AuditRecord,
  FakeClock,
  isPlmError,
  isTerminal,
  openStore,
  type Run,
  RunStore,
  systemClock,
} from "../../agent_runtime/mod.ts";
import {
  CONCURRENCY,
  keyOf,
  LEASE_TTL_MS,
  openWorker,
  RUNS,
  SVC,
  taskOf,
} from "./_crash_worker.ts";
import { POSTGRES_URL } from "../_postgres.ts";
import { withPostgresDatabase } from "../_postgres_database.ts";

const WORKER = new URL("./_crash_worker.ts", import.meta.url).pathname;
/** The first worker is killed once it reports this many runs succeeded. */
const KILL_AFTER = 40;
/** How long the first worker may take to get there before the test gives up. */
const KILL_DEADLINE_MS = 15_000;
/** The recovering worker's clock runs this far ahead: every lease of the dead worker has expired. */
const CLOCK_AHEAD_MS = LEASE_TTL_MS + 1_000;

interface Execution {
  readonly runId: string;
  readonly attempt: number;
  readonly owner: string;
}

/**
 * Reads the child's `succeeded N` lines and kills it with SIGKILL at the
 * first N >= `threshold` (or when `deadlineMs` passes), then drains stdout.
 */
async function killAfter(child: Deno.ChildProcess, threshold: number, deadlineMs: number) {
  let killedAt: number | undefined;
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // It already exited.
    }
  };
  const guard = setTimeout(kill, deadlineMs);
  const lines: string[] = [];
  let buffer = "";
  try {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        lines.push(line);
        const count = /^succeeded (\d+)$/.exec(line)?.[1];
        if (killedAt === undefined && count !== undefined && Number(count) >= threshold) {
          killedAt = Number(count);
          kill();
        }
      }
    }
  } finally {
    clearTimeout(guard);
  }
  return { killedAt, lines };
}

/** Waits (on the real clock, as the processes run on it) until `done()` holds; 10 s at most. */
async function until(done: () => Promise<boolean>, what: string): Promise<void> {
  for (let waited = 0; !(await done()); waited += 5) {
    if (waited > 10_000) assert.fail(`timed out waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function readExecutions(path: string): Execution[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  return text.split("\n").filter((line) => line !== "").map((line) => {
    const match = /^(\S+) (\d+) (w1|w2)$/.exec(line);
    assert.ok(match, `malformed execution line ${JSON.stringify(line)}`);
    return { runId: match[1]!, attempt: Number(match[2]), owner: match[3]! };
  });
}

/**
 * Replays one run's lease and transition records in seq order and checks that
 * every transition made by a worker happened while that worker held the
 * lease, that a lease changes hands only after it was reclaimed, and returns
 * who recorded the `succeeded` transitions.
 */
function replayLeases(runId: string, records: readonly AuditRecord[]): string[] {
  let holder: string | null = null;
  let holderUntil = 0;
  let running = false;
  const succeededBy: string[] = [];
  const where = (r: AuditRecord) => `run ${runId}, record ${r.seq} (${r.action} ${r.outcome})`;
  records.forEach((record, i) => {
    const data = record.data as { [key: string]: unknown };
    switch (record.action) {
      case "run.created":
        assert.equal(i, 0, `${where(record)}: not the first record`);
        break;
      case "run.lease.claimed":
        assert.equal(data.previousOwner, holder, `${where(record)}: previous owner`);
        // A lease changes hands once free, or once expired on a run that is not running
        // (a running run is reclaimed first: lease_expired, then the reclaim record).
        assert.ok(
          holder === null || holder === data.owner ||
            (!running && record.at >= holderUntil),
          `${where(record)}: ${String(data.owner)} claimed while ${holder} held the lease`,
        );
        assert.equal(record.actor.subject, data.owner, `${where(record)}: claimed for another`);
        holder = data.owner as string;
        holderUntil = data.expiresAt as number;
        break;
      case "run.lease.reclaimed":
        assert.notEqual(holder, null, `${where(record)}: nothing to reclaim`);
        assert.equal(data.previousOwner, holder, `${where(record)}: reclaimed from whom`);
        holder = null;
        break;
      case "run.lease.released":
        // A worker gives a run back (a stop, a lost race for an agent slot): its own lease only.
        assert.notEqual(holder, null, `${where(record)}: nothing to release`);
        assert.equal(record.actor.subject, holder, `${where(record)}: released by another`);
        holder = null;
        break;
      case "run.transition":
        if (data.event === "lease_expired") {
          // The reclaimer's transition: the reclaim record must follow at once.
          assert.equal(data.previousOwner, holder, `${where(record)}: expired whose lease`);
          assert.equal(records[i + 1]?.action, "run.lease.reclaimed", `${where(record)}: alone`);
          running = false;
          break;
        }
        assert.equal(
          record.actor.subject,
          holder,
          `${where(record)}: made by ${record.actor.subject} while ${holder} held the lease`,
        );
        if (data.event === "start") assert.equal(data.owner, holder, `${where(record)}: owner`);
        if (record.outcome === "succeeded") succeededBy.push(record.actor.subject);
        running = record.outcome === "running";
        if (isTerminal(record.outcome as Run["state"])) holder = null;
        break;
      default:
        assert.fail(`${where(record)}: unexpected action`);
    }
  });
  return succeededBy;
}

Deno.test("replayLeases() catches a lease taken or used without a reclaim", async (t) => {
  const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const w1 = { subject: "w1", kind: "service" } as const;
  const w2 = { subject: "w2", kind: "service" } as const;
  /** A run started by w1 whose lease then expires; `then` continues the story. */
  async function story(
    then: (runs: RunStore, id: string) => Promise<unknown>,
    keep: (record: AuditRecord) => boolean = () => true,
  ) {
    await using db = await openStore(":memory:");
    const clock = new FakeClock(1_000);
    const audit = new AuditLog(db, { clock });
    const runs = new RunStore(db, { audit, clock });
    const { run } = await runs.create({
      task: { ...taskOf(0), capabilities: ["bom"], input: null, risk: "low", attributes: {} },
      requester: SVC,
      traceparent,
    }, { actor: w1 });
    const { lease } = await runs.claim(run.id, "w1", 100, { actor: w1 });
    await runs.apply(run.id, { type: "start", agentId: "a" }, {
      actor: w1,
      lease: { owner: "w1", token: lease!.token },
      data: { owner: "w1" },
    });
    clock.advance(200);
    await then(runs, run.id);
    const records = (await audit.list({ runId: run.id })).filter(keep);
    return () => replayLeases(run.id, records);
  }
  /** w2 takes the run back, claims it and starts an attempt; its lease. */
  async function takeOver(runs: RunStore, id: string) {
    await runs.reclaimExpired(undefined, { actor: w2 });
    const { lease } = await runs.claim(id, "w2", 100, { actor: w2 });
    const hold = { owner: "w2", token: lease!.token };
    await runs.apply(id, { type: "start", agentId: "a" }, {
      actor: w2,
      lease: hold,
      data: { owner: "w2" },
    });
    return hold;
  }
  await t.step("a reclaim, then w2 claims and finishes: one success, by w2", async () => {
    const replay = await story(async (runs, id) => {
      const hold = await takeOver(runs, id);
      await runs.apply(id, { type: "succeed", result: null }, { actor: w2, lease: hold });
    });
    assert.deepEqual(replay(), ["w2"]);
  });
  await t.step("w2 takes the expired lease over without a reclaim", async () => {
    // The store reclaims on takeover; a history without that reclaim must be caught.
    const replay = await story(
      (runs, id) => runs.claim(id, "w2", 100, { actor: w2 }),
      (r) => r.action !== "run.lease.reclaimed" && r.outcome !== "retrying",
    );
    assert.throws(replay, /w2 claimed while w1 held the lease/);
  });
  await t.step(
    "w1 writes after its lease was reclaimed (unfenced, as a buggy worker would)",
    async () => {
      const replay = await story(async (runs, id) => {
        await takeOver(runs, id);
        await runs.apply(id, { type: "succeed", result: null }, { actor: w1 });
      });
      assert.throws(replay, /made by w1 while w2 held the lease/);
    },
  );
  await t.step("w1's fenced write after the takeover is refused and leaves no record", async () => {
    let refused: unknown;
    const replay = await story(async (runs, id) => {
      await takeOver(runs, id);
      await runs.apply(id, { type: "succeed", result: null }, {
        actor: w1,
        lease: { owner: "w1", token: 1 },
      }).catch((err) => (refused = err));
    });
    assert.ok(isPlmError(refused, "ERR_RUN_LEASE_LOST"), String(refused));
    assert.deepEqual(replay(), [], "w2's attempt is still running; nothing of w1's after it");
  });
});

Deno.test("AgentRuntime.start() finishes every run of a SIGKILLed worker once, never under two leases", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plm_crash_" });
  try {
    await crashAndRecover(`${dir}/plm.db`, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

if (POSTGRES_URL !== undefined) {
  const url = POSTGRES_URL;
  Deno.test({
    name: "[postgres] AgentRuntime.start() finishes every run of a SIGKILLed worker once",
    sanitizeResources: false, // pg keeps its sockets until end() settles
    sanitizeOps: false,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "plm_crash_" });
      try {
        await withPostgresDatabase(url, (location) => crashAndRecover(location, dir));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/**
 * w1, a real process, works on the store at `path` until it is killed with
 * SIGKILL midway; w2, here, recovers every run; then the runs, the audit log's
 * lease history and the executions recorded in `dir` are checked.
 */
async function crashAndRecover(path: string, dir: string): Promise<void> {
  const sideFile = `${dir}/executions.txt`;
  {
    // --- w1: a real process on the real clock, killed midway --------------------------------
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", WORKER, path, sideFile],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const { killedAt, lines } = await killAfter(child, KILL_AFTER, KILL_DEADLINE_MS);
    const status = await child.status;
    const why = `w1 stdout tail: ${lines.slice(-3).join(" | ")}; stderr: ${await stderr}`;
    assert.equal(killedAt !== undefined, true, `w1 never reported ${KILL_AFTER} runs; ${why}`);
    assert.equal(status.signal, "SIGKILL", why);
    assert.ok(!lines.includes("all done"), `w1 finished before the kill; ${why}`);
    const w1Executions = readExecutions(sideFile);

    // --- w2: the same file, a clock ahead of the dead worker's leases -----------------------
    const clock = { now: () => systemClock.now() + CLOCK_AHEAD_MS };
    const { db, controlPlane, runtime } = await openWorker(path, "w2", sideFile, clock);
    try {
      const atKill = await allRuns(controlPlane.runs);
      const terminalAtKill = atKill.filter((r) => isTerminal(r.state));
      const runningAtKill = atKill.filter((r) => r.state === "running");
      assert.ok(terminalAtKill.length >= killedAt!, `${terminalAtKill.length} finished at kill`);
      assert.ok(terminalAtKill.every((r) => r.state === "succeeded"));
      assert.ok(terminalAtKill.length < RUNS, "some runs were still to do at the kill");
      assert.ok(
        atKill.some((r) => r.lease?.owner === "w1"),
        "w1 held leases when it was killed",
      );

      runtime.start(); // reclaims w1's expired leases and claims ready runs up to its slots
      // start() takes up the runs the kill left, up to its slots (w1 may not have created
      // them all; a running one only once the reaper gave it back), without a submit.
      const fillable = Math.min(CONCURRENCY, atKill.length - terminalAtKill.length);
      await until(async () => {
        const claims = await controlPlane.audit.list({
          actorSubject: "w2",
          actionPrefix: "run.lease.claimed",
          limit: 1_000,
        });
        return claims.length >= fillable;
      }, "w2 claims the runs the kill left");
      const ids: string[] = [];
      for (let n = 0; n < RUNS; n++) {
        ids.push(await runtime.submit(taskOf(n), { identity: SVC, idempotencyKey: keyOf(n) }));
      }
      const finished = await Promise.all(ids.map((id) => runtime.wait(id)));
      await runtime.stop();

      // Every run exists once and succeeded.
      assert.equal(new Set(ids).size, RUNS, "one run per idempotency key");
      const all = await allRuns(controlPlane.runs);
      assert.equal(all.length, RUNS, "no duplicate runs");
      assert.deepEqual(
        all.map((r) => r.idempotencyKey).sort(),
        Array.from({ length: RUNS }, (_, n) => keyOf(n)).sort(),
      );
      const states = all.map((r) => r.state);
      assert.ok(states.every((s) => s === "succeeded"), `states: ${[...new Set(states)]}`);
      assert.ok(finished.every((r) => r.state === "succeeded"));
      assert.ok(all.every((r) => r.lease === null), "no lease left behind");

      // The audit log replays into one lease holder at a time and one success per run.
      assert.equal((await controlPlane.audit.list({ actionPrefix: "run.created" })).length, RUNS);
      assert.equal((await controlPlane.audit.list({ actionPrefix: "policy.decide" })).length, RUNS);
      const runRecords = await controlPlane.audit.list({ actionPrefix: "run." });
      const byRun = Map.groupBy(runRecords, (r) => r.runId ?? "");
      assert.deepEqual([...byRun.keys()].sort(), [...ids].sort());
      const succeededBy = new Map<string, string>();
      for (const [runId, records] of byRun) {
        const owners = replayLeases(runId, records);
        assert.equal(owners.length, 1, `run ${runId} succeeded ${owners.length} times`);
        succeededBy.set(runId, owners[0]!);
      }
      const reclaimed = await controlPlane.audit.list({ actionPrefix: "run.lease.reclaimed" });
      assert.ok(reclaimed.length > 0, "w1's leases were reclaimed");
      // w2's polls claim several runs in one statement (one claim time for all of them).
      const w2Claims = runRecords.filter((r) =>
        r.action === "run.lease.claimed" && r.actor.subject === "w2"
      );
      const perStatement = Map.groupBy(
        w2Claims,
        (r) => (r.data as { expiresAt: number }).expiresAt,
      );
      const widest = Math.max(...[...perStatement.values()].map((claims) => claims.length));
      assert.ok(widest <= CONCURRENCY, "never more than the free slots");
      assert.ok(widest >= Math.min(2, fillable), `one statement took ${widest} runs`);
      assert.ok(reclaimed.every((r) => r.actor.subject === "w2" && r.data !== null));
      for (const run of terminalAtKill) assert.equal(succeededBy.get(run.id), "w1");
      for (const run of runningAtKill) {
        assert.equal(succeededBy.get(run.id), "w2", `run ${run.id} was running at the kill`);
      }

      // Executions: each matches a `running` transition of its owner; at-least-once, no more.
      const executions = readExecutions(sideFile);
      assert.deepEqual(executions.slice(0, w1Executions.length), w1Executions);
      assert.ok(executions.slice(w1Executions.length).every((e) => e.owner === "w2"));
      for (const e of executions) {
        const started = byRun.get(e.runId)?.some((r) =>
          r.action === "run.transition" && r.outcome === "running" &&
          r.actor.subject === e.owner && (r.data as { attempt?: number }).attempt === e.attempt
        );
        assert.ok(started, `execution ${e.runId} #${e.attempt} by ${e.owner} was never started`);
      }
      const perRun = Map.groupBy(executions, (e) => e.runId);
      assert.deepEqual([...perRun.keys()].sort(), [...ids].sort(), "every run was executed");
      const twice = [...perRun.values()].filter((list) => list.length > 1);
      assert.ok(
        twice.every((list) =>
          list.length === 2 && list[0]!.owner === "w1" && list[1]!.owner === "w2"
        ),
        "only a run caught mid-flight by the kill runs again, once, on w2",
      );
      assert.ok(twice.length <= runningAtKill.length && runningAtKill.length <= CONCURRENCY);
      for (const run of terminalAtKill) assert.equal(perRun.get(run.id)?.length, 1);

      assert.equal((await controlPlane.audit.verify()).ok, true);
      console.log(
        `crash: killed w1 after ${killedAt} reported (${terminalAtKill.length} succeeded, ` +
          `${runningAtKill.length} running, ${RUNS - terminalAtKill.length} not finished); ` +
          `w2 reclaimed ${reclaimed.length} leases; ` +
          `${twice.length} runs executed twice; ${executions.length} executions in all`,
      );
    } finally {
      await db.close();
    }
  }
}
