/**
 * `plm demo`: the main job, a guided tour of the flows that exist.
 *
 * @module
 */
import { FakeClock, IdentitySchema, PlmError } from "../shared/mod.ts";
import type { CliIo } from "./io.ts";
import { UsageError } from "./io.ts";

const HELP = `plm demo: run the end-to-end demonstration

USAGE:
  plm demo

OPTIONS:
  -h, --help  Show this help`;

/** The `plm demo` command. */
export const demoCommand: {
  summary: string;
  help: string;
  run(args: string[], io: CliIo): Promise<number>;
} = {
  summary: "Run the end-to-end demonstration",
  help: HELP,
  run(args, io) {
    if (args.length > 0) throw new UsageError(`unexpected argument '${args[0]}'`);
    const clock = new FakeClock(Date.UTC(2026, 10, 25));
    io.out(`[${new Date(clock.now()).toISOString()}] validating identities`);
    const alice = IdentitySchema.parse({
      subject: "alice",
      actorKind: "human",
      roles: ["approver"],
      scopes: ["runs:write"],
    });
    io.out(`  ok    ${alice.subject} (${alice.actorKind}) roles=${alice.roles.join(",")}`);
    const bad = IdentitySchema.safeParse({ subject: "", actorKind: "robot" });
    io.out(`  refused invalid identity: ${bad.success ? "no" : "yes"}`);
    const err = new PlmError("ERR_IDENTITY_REQUIRED", "No identity is bound");
    io.out(`  typed error: ${err.code}`);
    return Promise.resolve(0);
  },
};
