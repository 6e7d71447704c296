/**
 * The chain walk, pure: given the rows of an audit log (oldest first, in
 * pages) and the heads it must pass through, it reports the first record that
 * is missing, out of place, unlinked or altered, then the first head it does
 * not reach or that names another hash. No I/O of its own: `AuditLog.verify`
 * feeds it the pages of one read snapshot and adds the store's own check (its triggers).
 *
 * @module
 */
import { invalidArgument, parseArgument } from "../../shared/mod.ts";
import { checkHead } from "./_head.ts";
import { AuditCheckpointSchema } from "./checkpoint.ts";
import { AUDIT_GENESIS_HASH, chainHash } from "./hash.ts";
import type { AuditChainProblem, AuditChainResult, AuditVerifyOptions } from "./verify.ts";

/**
 * A stored record as the walk reads it: the columns of `audit_log` in order,
 * with `data` as its stored canonical JSON text.
 */
export type ChainRow = readonly [
  seq: number,
  at: number,
  actorSubject: string,
  actorKind: string,
  action: string,
  resource: string,
  outcome: string,
  reason: string | null,
  runId: string | null,
  traceId: string | null,
  data: string,
  prevHash: string,
  hash: string,
];

/** A head the chain must pass through: the expected head or a checkpoint. */
export interface Witness {
  readonly seq: number;
  readonly hash: string;
  /** The checkpoint's index in `options.checkpoints`; absent for `expectedHead`. */
  readonly checkpointIndex?: number;
}

/**
 * Checks `options.expectedHead` and `options.checkpoints` and returns them as
 * witnesses sorted by seq (stable: at one seq, the expected head comes before
 * the checkpoints). Throws `ERR_INVALID_ARGUMENT` naming the field.
 */
export function witnessesOf(options: AuditVerifyOptions): Witness[] {
  const { expectedHead, checkpoints = [] } = options;
  const witnesses: Witness[] = [];
  if (expectedHead !== undefined) {
    checkHead("expectedHead", expectedHead);
    witnesses.push({ seq: expectedHead.seq, hash: expectedHead.hash });
  }
  if (!Array.isArray(checkpoints)) throw invalidArgument("checkpoints", "expected a list");
  checkpoints.forEach((checkpoint, index) => {
    const { seq, hash } = parseArgument(AuditCheckpointSchema, checkpoint, `checkpoints[${index}]`);
    witnesses.push({ seq, hash, checkpointIndex: index });
  });
  witnesses.sort((a, b) => a.seq - b.seq);
  return witnesses;
}

/**
 * Walks the chain from genesis; `witnesses` (sorted by seq, as
 * {@link witnessesOf} returns them) are the heads it must pass through. Chain
 * problems are reported first, then the lowest witness that the log does not
 * reach or that names another hash. It stops reading at the first problem.
 *
 * Invariants: `checked` is the seq of the last valid record (records are
 * numbered 1, 2, ... without gaps), `prevHash` its hash (the genesis hash
 * before the first); a page may end anywhere, the walk does not care.
 */
export async function verifyChain(
  pages: AsyncIterable<readonly ChainRow[]> | Iterable<readonly ChainRow[]>,
  witnesses: readonly Witness[],
): Promise<AuditChainResult> {
  let checked = 0;
  let prevHash = AUDIT_GENESIS_HASH;
  // The hash the log holds at each witness's seq, filled in as the walk passes it.
  const found = new Map<number, string>([[0, AUDIT_GENESIS_HASH]]);
  let next = 0;
  while (witnesses[next]?.seq === 0) next++;
  for await (const page of pages) {
    for (const row of page) {
      const seq = row[0];
      const expected = checked + 1;
      if (seq !== expected) {
        return broken(
          checked,
          Math.min(expected, seq),
          "seq_gap",
          seq > expected
            ? `Record ${expected} is missing (the next one is ${seq})`
            : `Record ${seq} is out of place (expected ${expected})`,
        );
      }
      if (row[11] !== prevHash) {
        return broken(
          checked,
          seq,
          "prev_hash_mismatch",
          `Record ${seq} does not link to record ${seq - 1} (prevHash mismatch)`,
        );
      }
      const hash = row[12];
      if (
        chainHash(
          prevHash,
          seq,
          row[1],
          row[2],
          row[3],
          row[4],
          row[5],
          row[6],
          row[7],
          row[8],
          row[9],
          row[10],
        ) !== hash
      ) {
        return broken(
          checked,
          seq,
          "hash_mismatch",
          `Record ${seq} has been altered (hash mismatch)`,
        );
      }
      if (seq === witnesses[next]?.seq) {
        found.set(seq, hash);
        while (witnesses[next]?.seq === seq) next++;
      }
      prevHash = hash;
      checked = seq;
    }
  }
  for (const witness of witnesses) {
    const what = witness.checkpointIndex === undefined
      ? "the expected head"
      : `checkpoint ${witness.checkpointIndex}`;
    const hashThere = found.get(witness.seq);
    if (hashThere === undefined) {
      return broken(
        checked,
        checked + 1,
        "truncated",
        `The log ends at record ${checked} but ${what} is record ${witness.seq}`,
        witness.checkpointIndex,
      );
    }
    if (hashThere !== witness.hash) {
      return broken(
        checked,
        witness.seq,
        "head_mismatch",
        `Record ${witness.seq} differs from ${what} (history rewritten)`,
        witness.checkpointIndex,
      );
    }
  }
  return { ok: true, checked, head: { seq: checked, hash: prevHash } };
}

/** A failed verification: how far it got, where it broke, and why. */
export function broken(
  checked: number,
  firstBadSeq: number,
  problem: AuditChainProblem,
  reason: string,
  checkpointIndex?: number,
): AuditChainResult {
  return checkpointIndex === undefined
    ? { ok: false, checked, firstBadSeq, problem, reason }
    : { ok: false, checked, firstBadSeq, problem, reason, checkpointIndex };
}
