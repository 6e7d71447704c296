/**
 * The store port and how to open it: {@link openStore} opens a SQLite file or
 * `":memory:"` (migrated to the latest {@link MIGRATIONS}), or a PostgreSQL
 * database, as a {@link Store} whose transactions hand the async repositories
 * of runs, approvals, audit records and governance state to the services.
 *
 * @example Open, write in a transaction and read it back
 * ```ts
 * import { MIGRATIONS, openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * assert.equal(await store.schemaVersion(), MIGRATIONS.length);
 * await store.transaction((tx) => tx.governance.insertStart("agent-1", 5));
 * assert.equal(await store.read((tx) => tx.governance.countStarts("agent-1", 0)), 1);
 * ```
 *
 * @module
 */
export { openStore, type OpenStoreOptions } from "./open.ts";
export { type Migration, MIGRATIONS } from "./migrations.ts";
export type { SynchronousMode } from "./database.ts";
export type {
  ApprovalInsert,
  ApprovalQuery,
  ApprovalRecord,
  ApprovalRepository,
  AuditDraft,
  AuditQuery,
  AuditRepository,
  AuditSeal,
  AutonomyRow,
  ClaimSpec,
  GovernanceRepository,
  PendingAudit,
  PolicyRepository,
  PolicyVersionRow,
  RunKeyset,
  RunRepository,
  RunWrite,
  SealedHead,
  Store,
  StoredRun,
  StoreKind,
  StoreRole,
  StoreTx,
  VoteInsert,
  WakeTopic,
} from "./port.ts";
