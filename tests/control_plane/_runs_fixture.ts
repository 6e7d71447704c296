/** Shared set-up for the run and approval tests. */
import {
  type AuditActor,
  AuditLog,
  openStore,
  RunStore,
  type RunTask,
  type Store,
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

/** Opens a store: SQLite `:memory:` by default; PostgreSQL tests pass their own factory. */
export type StoreFactory = () => Promise<Store>;

/** The default store factory: SQLite in memory. */
export const memoryStore: StoreFactory = () => openStore(":memory:");

export async function setUp(open: StoreFactory | string = memoryStore): Promise<{
  store: Store;
  clock: FakeClock;
  audit: AuditLog;
  runs: RunStore;
}> {
  const store = typeof open === "string" ? await openStore(open) : await open();
  const clock = new FakeClock(Date.UTC(2026, 10, 25));
  let n = 0;
  const audit = new AuditLog(store, { clock });
  const runs = new RunStore(store, { audit, clock, generateId: () => `run-${++n}` });
  return { store, clock, audit, runs };
}
