/**
 * The SQLite repository of durable governance state (migration 5, ADR 0007).
 *
 * @module
 */
import type { AutonomyRow, GovernanceRepository } from "../port.ts";
import { changes, type TxScope } from "./_sql.ts";

const AUTONOMY = "SELECT cap_level, streak, version FROM autonomy_state WHERE agent_id = ?";
const INSERT_AUTONOMY =
  `INSERT INTO autonomy_state (agent_id, cap_level, streak, updated_at, version)
  VALUES (:agent, :cap, :streak, :at, 1) ON CONFLICT (agent_id) DO NOTHING`;
const UPDATE_AUTONOMY = `UPDATE autonomy_state SET cap_level = :cap, streak = :streak,
  updated_at = :at, version = version + 1 WHERE agent_id = :agent AND version = :expected`;
const COUNT_STARTS = "SELECT count(*) FROM agent_run_starts WHERE agent_id = ? AND at > ?";
const NTH_START =
  "SELECT at FROM agent_run_starts WHERE agent_id = ? AND at > ? ORDER BY at LIMIT 1 OFFSET ?";
const PRUNE_STARTS = "DELETE FROM agent_run_starts WHERE agent_id = ? AND at <= ?";
const INSERT_START = "INSERT INTO agent_run_starts (agent_id, at) VALUES (?, ?)";

/** {@link GovernanceRepository} on SQLite. */
export class SqliteGovernanceRepository implements GovernanceRepository {
  readonly #scope: TxScope;

  constructor(scope: TxScope) {
    this.#scope = scope;
  }

  lockAgent(_agentId: string): Promise<void> {
    // Write transactions take turns (in the process and across processes): nothing to lock.
    this.#scope.use();
    return Promise.resolve();
  }

  autonomy(agentId: string): Promise<AutonomyRow | undefined> {
    const row = this.#scope.use().get<{
      cap_level: string | null;
      streak: number;
      version: number;
    }>(AUTONOMY).get(agentId);
    return Promise.resolve(
      row === undefined
        ? undefined
        : { capLevel: row.cap_level, streak: row.streak, version: row.version },
    );
  }

  writeAutonomy(
    agentId: string,
    next: { capLevel: string | null; streak: number },
    expectedVersion: number,
    at: number,
  ): Promise<boolean> {
    const params = {
      agent: agentId,
      cap: next.capLevel,
      streak: next.streak,
      at: Math.trunc(at),
    };
    // Version 0: insert, changing nothing when a row exists; else update that version only.
    const sql = this.#scope.use();
    const changed = expectedVersion === 0
      ? sql.get(INSERT_AUTONOMY).run(params)
      : sql.get(UPDATE_AUTONOMY).run({ ...params, expected: expectedVersion });
    return Promise.resolve(changes(changed) === 1);
  }

  countStarts(agentId: string, since: number): Promise<number> {
    const row = this.#scope.use().get<[number]>(COUNT_STARTS, { returnArrays: true }).get(
      agentId,
      Math.trunc(since),
    );
    return Promise.resolve(row?.[0] ?? 0);
  }

  nthStart(agentId: string, since: number, offset: number): Promise<number | undefined> {
    const row = this.#scope.use().get<[number]>(NTH_START, { returnArrays: true }).get(
      agentId,
      Math.trunc(since),
      offset,
    );
    return Promise.resolve(row?.[0]);
  }

  pruneStarts(agentId: string, before: number): Promise<void> {
    this.#scope.use().get(PRUNE_STARTS).run(agentId, Math.trunc(before));
    return Promise.resolve();
  }

  insertStart(agentId: string, at: number): Promise<void> {
    this.#scope.use().get(INSERT_START).run(agentId, Math.trunc(at));
    return Promise.resolve();
  }
}
