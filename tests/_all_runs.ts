import type { Run, RunState, RunStore } from "../control_plane/mod.ts";

/** Every run (in `states`), oldest first, read through `RunStore.page` as a user would. */
export async function allRuns(runs: RunStore, states?: readonly RunState[]): Promise<Run[]> {
  const all: Run[] = [];
  let cursor: string | null = null;
  do {
    const page: { items: Run[]; nextCursor: string | null } = await runs.page({
      limit: 1_000,
      ...(states === undefined ? {} : { states }),
      ...(cursor === null ? {} : { cursor }),
    });
    all.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor !== null);
  return all.reverse();
}
