/**
 * Diagnostics shared by `bench/pg_scale.ts` and its worker processes: where
 * the CPU went during a timed window (Linux `/proc`), and a switch that drops
 * the store's `pg_notify` statements to measure what the wake-up hints cost.
 * Not a benchmark of its own.
 *
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";

/** Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on Linux). */
const TICKS = 100;

/** CPU seconds (user + system) a process has used, or 0 when it is gone or not on Linux. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The fields after the command name (which may hold spaces) in parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return 0;
  }
}

/** CPU seconds used so far by each PostgreSQL server process of the machine, by pid. */
export function postgresCpuSeconds(): Map<number, number> {
  const byPid = new Map<number, number>();
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
        if (stat.includes("(postgres)")) {
          byPid.set(Number(entry.name), cpuSeconds(Number(entry.name)));
        }
      } catch {
        // The process ended meanwhile.
      }
    }
  } catch {
    // Not Linux: no figure.
  }
  return byPid;
}

/**
 * CPU seconds the PostgreSQL processes used from `from` to `to`: the growth of
 * each process alive at the end (a process that ended meanwhile is not counted).
 */
export function postgresCpuBetween(from: Map<number, number>, to: Map<number, number>): number {
  let total = 0;
  for (const [pid, seconds] of to) total += seconds - (from.get(pid) ?? 0);
  return total;
}

/** CPU seconds the whole machine spent busy (all but idle and iowait), all CPUs. */
export function machineBusySeconds(): number {
  try {
    const cpu = Deno.readTextFileSync("/proc/stat").split("\n")[0]!.split(/\s+/).slice(1)
      .map(Number);
    const [user, nice, system, _idle, _iowait, irq, softirq, steal] = cpu;
    return (user! + nice! + system! + irq! + softirq! + steal!) / TICKS;
  } catch {
    return 0;
  }
}

/**
 * Makes every `pg` client of this process send `SELECT 1` instead of a
 * statement that calls `pg_notify`: the store's wake-up hints are dropped
 * (they are not the correctness path: workers poll), everything else is
 * unchanged. A diagnostic, for `pg_scale.ts --no-notify`.
 */
export function dropNotifies(): void {
  const query = pg.Client.prototype.query;
  // deno-lint-ignore no-explicit-any
  (pg.Client.prototype as any).query = function (this: unknown, ...args: any[]) {
    const text = typeof args[0] === "string" ? args[0] : args[0]?.text;
    if (typeof text === "string" && text.includes("pg_notify")) {
      args = ["SELECT 1", ...args.slice(2)];
    }
    // deno-lint-ignore no-explicit-any
    return (query as any).apply(this, args);
  };
}
