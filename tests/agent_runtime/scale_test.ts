/**
 * Many worker processes share one queue: on PostgreSQL four, on one SQLite
 * file two (and a third after both are gone). One is killed with SIGKILL
 * midway and one stopped with SIGTERM; the rest finish. Then the store must
 * show every run terminal and none lost, one lease holder at a time and no
 * write under a lost lease (the audit's lease history), budgets and autonomy
 * drops counted once across processes, and a chain that verifies against a
 * checkpoint signed midway.
 */
import assert from "node:assert/strict";
import {
  AuditLog,
  type AuditRecord,
  AutonomyController,
  generateCheckpointKeys,
  importCheckpointPrivateKey,
  importCheckpointPublicKey,
  isTerminal,
  openStore,
  type Run,
  type RunState,
  signCheckpoint,
  type Store,
  verifyCheckpoint,
} from "../../agent_runtime/mod.ts";
import { openTestPostgresStore, POSTGRES_URL } from "../_postgres.ts";
import { DEMOTE_AFTER, FLAKY, FLAKY_PER_WORKER, PLANNER, PLANNER_BUDGET } from "./_scale_worker.ts";

const WORKER = new URL("./_scale_worker.ts", import.meta.url).pathname;
/** How long the whole queue may take before the test gives up. */
const DEADLINE_MS = 240_000;
const NOT_TERMINAL: readonly RunState[] = [
  "queued",
  "retrying",
  "escalated",
  "running",
  "awaiting_approval",
];

/** A worker process and the lines it printed. */
class Worker {
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  readonly stderr: Promise<string>;
  readonly #seen = new Map<string, () => void>();
  readonly done: Promise<void>;

  constructor(readonly owner: string, args: string[]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", WORKER, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.stderr = new Response(child.stderr).text();
    this.done = (async () => {
      let buffer = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buffer += chunk;
        for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          this.lines.push(line);
          this.#seen.get(line)?.();
        }
      }
    })();
  }

  /** Resolves when the worker printed `line` (or already had). */
  printed(line: string): Promise<void> {
    if (this.lines.includes(line)) return Promise.resolve();
    return new Promise((resolve) => this.#seen.set(line, resolve));
  }

  async why(): Promise<string> {
    return `${this.owner} stdout: ${this.lines.slice(-3).join(" | ")}; stderr: ${
      (await this.stderr).slice(-2_000)
    }`;
  }
}

/** How many runs are in each state, read through the port. */
async function countStates(store: Store): Promise<Map<RunState, number>> {
  return await store.read(async (tx) => {
    const counts = new Map<RunState, number>();
    let after: { createdAt: number; id: string } | undefined;
    for (;;) {
      const page = await tx.runs.page(undefined, after, 1_000);
      for (const run of page) counts.set(run.state, (counts.get(run.state) ?? 0) + 1);
      const last = page.at(-1);
      if (page.length < 1_000 || last === undefined) return counts;
      after = { createdAt: last.createdAt, id: last.id };
    }
  });
}

async function allRunsOf(store: Store): Promise<Run[]> {
  return await store.read(async (tx) => {
    const runs: Run[] = [];
    let after: { createdAt: number; id: string } | undefined;
    for (;;) {
      const page = await tx.runs.page(undefined, after, 1_000);
      runs.push(...page);
      const last = page.at(-1);
      if (page.length < 1_000 || last === undefined) return runs;
      after = { createdAt: last.createdAt, id: last.id };
    }
  });
}

/** Every audit record, oldest first. */
async function allRecords(audit: AuditLog): Promise<AuditRecord[]> {
  const records: AuditRecord[] = [];
  for (;;) {
    const page = await audit.list({ fromSeq: (records.at(-1)?.seq ?? 0) + 1, limit: 1_000 });
    records.push(...page);
    if (page.length < 1_000) return records;
  }
}

/** Waits (polling the store) until no run is left to do, or the deadline. */
async function drained(store: Store, expected: number, workers: Worker[]): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const counts = await countStates(store);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    const open = NOT_TERMINAL.reduce((n, state) => n + (counts.get(state) ?? 0), 0);
    if (total === expected && open === 0) return;
    if (Date.now() > deadline) {
      const why = await Promise.all(workers.map((w) => w.why()));
      assert.fail(`not drained: ${JSON.stringify([...counts])}; ${why.join("; ")}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Replays one run's records in seq order: a lease changes hands only after a
 * reclaim or release, every transition but the reclaimer's is made by the
 * lease holder, and the run ends once. Returns who ended it.
 */
function replayLeases(runId: string, records: readonly AuditRecord[]): string[] {
  let holder: string | null = null;
  let holderUntil = 0;
  const endedBy: string[] = [];
  const where = (r: AuditRecord) => `run ${runId}, record ${r.seq} (${r.action} ${r.outcome})`;
  for (const [i, record] of records.entries()) {
    const data = (record.data ?? {}) as { [key: string]: unknown };
    switch (record.action) {
      case "run.created":
        assert.equal(i, 0, `${where(record)}: not the first record`);
        break;
      case "run.lease.claimed":
        // A lease changes hands only once free, or once expired: a claim then names the
        // owner it takes over from, at or after the time that lease ran out.
        assert.ok(
          holder === null || holder === data.owner ||
            (data.previousOwner === holder && record.at >= holderUntil),
          `${where(record)}: ${String(data.owner)} claimed while ${holder} held the lease`,
        );
        holder = data.owner as string;
        holderUntil = data.expiresAt as number;
        break;
      case "run.lease.reclaimed":
        assert.notEqual(holder, null, `${where(record)}: nothing to reclaim`);
        holder = null;
        break;
      case "run.lease.released":
        assert.equal(record.actor.subject, holder, `${where(record)}: released by another`);
        holder = null;
        break;
      case "run.transition":
        if (data.event === "lease_expired") break; // the reaper's; the reclaim record follows
        if (data.event === "reject") {
          // Refused at submission (the budget), before any lease: by the submitter.
          assert.equal(holder, null, `${where(record)}: rejected under a lease`);
          endedBy.push(record.actor.subject);
          break;
        }
        assert.equal(
          record.actor.subject,
          holder,
          `${where(record)}: made by ${record.actor.subject} while ${holder} held the lease`,
        );
        if (isTerminal(record.outcome as RunState)) {
          endedBy.push(record.actor.subject);
          holder = null;
        }
        break;
      default:
        break; // policy, approval and autonomy records carry no lease
    }
  }
  return endedBy;
}

interface Scenario {
  readonly engine: string;
  readonly location: string;
  readonly schema: string | undefined;
  /** Opens the test's own view of the store. */
  readonly open: () => Promise<Store>;
  readonly workers: number;
  readonly perWorker: number;
}

/**
 * The scenario: start the workers (each submits its share), kill one with
 * SIGKILL once a fifth of the runs ended and stop another with SIGTERM at
 * half; wait for the rest to finish; then check the store.
 */
async function runScenario(s: Scenario): Promise<void> {
  const store = await s.open();
  const audit = new AuditLog(store);
  const workers: Worker[] = [];
  const spawn = (owner: string, first: number, count: number) => {
    const worker = new Worker(owner, [s.location, s.schema ?? "-", owner, `${first}`, `${count}`]);
    workers.push(worker);
    return worker;
  };
  try {
    const total = s.workers * s.perWorker;
    const flakyTotal = s.workers * FLAKY_PER_WORKER;
    const expected = total + flakyTotal;
    for (let w = 0; w < s.workers; w++) spawn(`w${w + 1}`, w * s.perWorker, s.perWorker);
    await Promise.all(workers.map((w) => w.printed("submitted")));

    const ended = async () => {
      const counts = await countStates(store);
      return [...counts].filter(([state]) => isTerminal(state)).reduce((n, [, c]) => n + c, 0);
    };
    const until = async (n: number) => {
      const deadline = Date.now() + DEADLINE_MS;
      while ((await ended()) < n) {
        if (Date.now() > deadline) assert.fail(`fewer than ${n} runs ended in time`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };

    await until(Math.floor(expected / 5));
    const killed = workers[0]!;
    killed.child.kill("SIGKILL");
    assert.equal((await killed.child.status).signal, "SIGKILL", await killed.why());
    const heldAtKill = (await allRunsOf(store)).filter((r) =>
      r.lease?.owner === killed.owner && !isTerminal(r.state)
    ).length;

    // A checkpoint of the chain as it is midway, signed with a key made here.
    const keys = await generateCheckpointKeys();
    const checkpoint = await signCheckpoint(await audit.head(), {
      privateKey: await importCheckpointPrivateKey(keys.privateKeyPem),
    });

    await until(Math.floor(expected / 2));
    const stopped = workers[1]!;
    stopped.child.kill("SIGTERM");
    const stoppedStatus = await stopped.child.status;
    assert.equal(stoppedStatus.code, 0, await stopped.why());
    await stopped.done;
    assert.ok(stopped.lines.includes("stopped"), await stopped.why());

    // With two workers, both are gone now: a third one, started fresh, finishes the queue.
    if (s.workers === 2) {
      spawn("w3", 0, 0);
    }
    await drained(store, expected, workers);
    for (const worker of workers.slice(2)) {
      worker.child.kill("SIGTERM");
      assert.equal((await worker.child.status).code, 0, await worker.why());
    }

    // Every run ended, once each, none lost: the planner's within its budget, the rest refused.
    const runs = await allRunsOf(store);
    assert.equal(runs.length, expected, "one run per idempotency key, none lost");
    assert.equal(
      new Set(runs.map((r) =>
        r.idempotencyKey
      )).size,
      expected,
    );
    const planner = runs.filter((r) => r.requester.subject === PLANNER.subject);
    const flaky = runs.filter((r) => r.requester.subject === FLAKY.subject);
    const tally = (list: Run[]) =>
      Object.fromEntries(
        Map.groupBy(list, (r) => r.state).entries().map(([k, v]) => [k, v.length]),
      );
    assert.deepEqual(tally(planner), {
      succeeded: PLANNER_BUDGET,
      rejected: total - PLANNER_BUDGET,
    });
    assert.deepEqual(tally(flaky), { failed: flakyTotal });
    assert.ok(runs.every((r) => r.lease === null), "no lease left behind");

    // The budget window counted each allowed run once, across processes.
    const starts = await store.read((tx) => tx.governance.countStarts(PLANNER.subject, 0));
    assert.equal(starts, PLANNER_BUDGET);

    // The flaky agent's failures made one streak, and its drop happened as often as one
    // process recording them all in a row would make it (its floor is L3: one drop).
    const replayStore = await openStore(":memory:");
    try {
      const replay = new AutonomyController(replayStore, { defaultLevel: "L4" }, {
        demoteAfter: DEMOTE_AFTER,
        floor: "L3",
      });
      for (let i = 0; i < flakyTotal; i++) await replay.recordOutcome(FLAKY.subject, "failed");
      const want = await replayStore.read((tx) => tx.governance.autonomy(FLAKY.subject));
      const got = await store.read((tx) => tx.governance.autonomy(FLAKY.subject));
      assert.deepEqual(
        { capLevel: got?.capLevel, streak: got?.streak },
        { capLevel: want?.capLevel, streak: want?.streak },
      );
    } finally {
      await replayStore.close();
    }

    // The audit log: one holder at a time, no write under a lost lease, one ending per run.
    const records = await allRecords(audit);
    const drops = records.filter((r) =>
      r.action === "autonomy.level.changed" && r.resource === `agent:${FLAKY.subject}`
    );
    assert.equal(drops.length, 1, "the flaky agent dropped once");
    const byRun = Map.groupBy(
      records.filter((r) => r.runId !== null && r.action.startsWith("run.")),
      (r) => r.runId!,
    );
    assert.equal(byRun.size, expected);
    const endings = new Map<string, number>();
    for (const [runId, list] of byRun) {
      const by = replayLeases(runId, list);
      assert.equal(by.length, 1, `run ${runId} ended ${by.length} times`);
      endings.set(by[0]!, (endings.get(by[0]!) ?? 0) + 1);
    }
    // Another worker took over each lease the killed worker held, by a reclaim of the
    // reaper (a running run) or a claim of the expired lease (a run not started yet).
    const reclaims = records.filter((r) => r.action === "run.lease.reclaimed");
    const handedOn = records.filter((r) =>
      (r.action === "run.lease.reclaimed" || r.action === "run.lease.claimed") &&
      (r.data as { previousOwner?: string } | null)?.previousOwner === killed.owner &&
      r.actor.subject !== killed.owner
    );
    assert.ok(handedOn.length >= heldAtKill, "every lease the killed worker held was handed on");

    // The chain verifies from genesis against the checkpoint signed midway.
    const trusted = await verifyCheckpoint(
      checkpoint,
      await importCheckpointPublicKey(keys.publicKeyPem),
    );
    assert.equal(trusted.ok, true);
    const verified = await audit.verify({ checkpoints: [checkpoint] });
    assert.equal(verified.ok, true, JSON.stringify(verified));
    assert.equal(verified.pending, 0);
    assert.ok(verified.sealedThrough >= checkpoint.seq);
    console.log(
      `${s.engine}: ${expected} runs, ${s.workers} workers; ended by ${
        JSON.stringify(Object.fromEntries(endings))
      }; ${handedOn.length} of the killed worker's leases handed on (${heldAtKill} held at the kill, ${reclaims.length} reclaims); ${records.length} audit records`,
    );
  } finally {
    for (const worker of workers) {
      try {
        worker.child.kill("SIGKILL");
      } catch {
        // It already exited.
      }
      await worker.child.status;
      await worker.done.catch(() => {});
      await worker.stderr.catch(() => "");
    }
    await store.close();
  }
}

if (POSTGRES_URL !== undefined) {
  const url = POSTGRES_URL;
  Deno.test({
    name: "[postgres] 4 worker processes share 2,000 runs through a SIGKILL and a SIGTERM",
    sanitizeResources: false,
    async fn() {
      // The test's store makes (and at the end drops) a fresh schema; the workers join it.
      const store = await openTestPostgresStore();
      await runScenario({
        engine: "postgres",
        location: url,
        schema: store.schema,
        open: () => Promise.resolve(store),
        workers: 4,
        perWorker: 500,
      });
    },
  });
}

Deno.test("2 worker processes share one SQLite file through a SIGKILL and a SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plm_scale_" });
  try {
    await runScenario({
      engine: "sqlite",
      location: `${dir}/plm.db`,
      schema: undefined,
      open: () => openStore(`${dir}/plm.db`),
      workers: 2,
      perWorker: 1_000,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
