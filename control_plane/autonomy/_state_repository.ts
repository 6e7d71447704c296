/**
 * The SQL of durable governance state (migration 5, ADR 0007): one SQL
 * operation per method, rows mapped to the shapes of `_rules.ts`. Callers
 * run read, rule and write inside one `Database.transaction`.
 *
 * @module
 */
import { PlmError } from "../../shared/mod.ts";
import type { Database, Statement } from "../store/database.ts";
import { type AutonomyState, NO_AUTONOMY_STATE } from "./_rules.ts";
import { AUTONOMY_LEVELS, type AutonomyLevel } from "./levels.ts";

/** Reads and writes `autonomy_state` rows. */
export class AutonomyStateRepository {
  readonly #read: Statement<[AutonomyLevel | null, number, number]>;
  readonly #write: Statement;

  constructor(db: Database) {
    this.#read = db.prepare(
      "SELECT cap_level, streak, version FROM autonomy_state WHERE agent_id = ?",
      { returnArrays: true },
    );
    this.#write = db.prepare(
      `INSERT INTO autonomy_state (agent_id, cap_level, streak, updated_at, version)
       VALUES (:agent, :cap, :streak, :at, 1)
       ON CONFLICT (agent_id) DO UPDATE SET cap_level = excluded.cap_level,
         streak = excluded.streak, updated_at = excluded.updated_at,
         version = autonomy_state.version + 1
       WHERE autonomy_state.version = :expected`,
    );
  }

  /** The agent's state, {@link NO_AUTONOMY_STATE} when it has no row. */
  read(agentId: string): AutonomyState {
    const row = this.#read.get(agentId);
    if (row === undefined) return NO_AUTONOMY_STATE;
    const [cap, streak, version] = row;
    return { cap: cap === null ? null : AUTONOMY_LEVELS.indexOf(cap), streak, version };
  }

  /**
   * Inserts or updates the agent's row if it is still at `expected.version`
   * (0: no row).
   *
   * @throws {PlmError} `ERR_INTERNAL` when another writer changed the row since it was read.
   */
  write(
    agentId: string,
    next: Omit<AutonomyState, "version">,
    expected: AutonomyState,
    at: number,
  ): void {
    const changed = this.#write.run({
      agent: agentId,
      cap: next.cap === null ? null : AUTONOMY_LEVELS[next.cap]!,
      streak: next.streak,
      at: Math.trunc(at),
      expected: expected.version,
    }).changes;
    if (Number(changed) !== 1) {
      throw new PlmError(
        "ERR_INTERNAL",
        `Cannot update the autonomy state of agent ${agentId} as another writer changed it`,
      );
    }
  }
}

/** Reads and writes `agent_run_starts` rows. */
export class RunStartRepository {
  readonly #count: Statement<[number]>;
  readonly #nth: Statement<[number]>;
  readonly #prune: Statement;
  readonly #insert: Statement;

  constructor(db: Database) {
    this.#count = db.prepare(
      "SELECT count(*) FROM agent_run_starts WHERE agent_id = ? AND at > ?",
      { returnArrays: true },
    );
    this.#nth = db.prepare(
      "SELECT at FROM agent_run_starts WHERE agent_id = ? AND at > ? ORDER BY at LIMIT 1 OFFSET ?",
      { returnArrays: true },
    );
    this.#prune = db.prepare("DELETE FROM agent_run_starts WHERE agent_id = ? AND at <= ?");
    this.#insert = db.prepare("INSERT INTO agent_run_starts (agent_id, at) VALUES (?, ?)");
  }

  /** How many run starts of the agent are after `since`. */
  count(agentId: string, since: number): number {
    return this.#count.get(agentId, Math.trunc(since))?.[0] ?? 0;
  }

  /** The agent's `offset`-th run start after `since`, oldest first (from 0). */
  nth(agentId: string, since: number, offset: number): number | undefined {
    return this.#nth.get(agentId, Math.trunc(since), offset)?.[0];
  }

  /** Deletes the agent's run starts at or before `since`. */
  prune(agentId: string, since: number): void {
    this.#prune.run(agentId, Math.trunc(since));
  }

  /** Records a run start of the agent at `at`. */
  insert(agentId: string, at: number): void {
    this.#insert.run(agentId, Math.trunc(at));
  }
}
