/** Shared set-up for the run and approval tests. */
import {
  type AuditActor,
  AuditLog,
  type Database,
  openDatabase,
  RunStore,
  type RunTask,
} from "../../control_plane/mod.ts";
import { FakeClock } from "../../shared/mod.ts";

export const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
export const ALICE = {
  subject: "alice",
  actorKind: "human",
  roles: ["editor"],
  scopes: [],
} as const;
export const ACTOR: AuditActor = { subject: "worker", kind: "service" };

export function task(overrides: Partial<RunTask> = {}): RunTask {
  return {
    action: "bom.update",
    resource: "bom:42",
    capabilities: ["bom"],
    input: { line: 1 },
    risk: "low",
    attributes: {},
    ...overrides,
  };
}

export function setUp(path = ":memory:"): {
  db: Database;
  clock: FakeClock;
  audit: AuditLog;
  runs: RunStore;
} {
  const db = openDatabase(path);
  const clock = new FakeClock(Date.UTC(2026, 10, 25));
  let n = 0;
  const audit = new AuditLog(db, { clock });
  const runs = new RunStore(db, { audit, clock, generateId: () => `run-${++n}` });
  return { db, clock, audit, runs };
}
