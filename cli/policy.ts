/**
 * `plm policy`: the policy set in the store (apply, show, history, diff) and
 * tools for its authors (check, eval, test, schema).
 *
 * @module
 */
import { userInfo } from "node:os";
import { parseArgs } from "node:util";
import { z } from "zod";
import {
  AuditLog,
  diffPolicySets,
  lintPolicySet,
  openStore,
  POLICY_EFFECTS,
  type PolicyDiff,
  PolicyEngine,
  PolicyError,
  type PolicyFinding,
  type PolicyRequest,
  PolicyRequestSchema,
  type PolicySet,
  policySetJsonSchema,
  PolicyStore,
  type StoredPolicy,
  validatePolicyContent,
  type Verdict,
} from "../control_plane/mod.ts";
import { withSystemIdentity } from "../control_plane/identity/mod.ts";
import {
  canonicalJson,
  formatIssues,
  IdentitySchema,
  INPUT_LIMITS,
  invalidArgument,
  type JsonValue,
  parseArgument,
  PlmError,
  type SchemaIssue,
} from "../shared/mod.ts";
import { openForReading } from "./db.ts";
import { type CliCommand, type CliIo, parseCount, storeLocation, UsageError } from "./io.ts";

const HELP = `plm policy: the policy set in the store, and tools for policy authors

USAGE:
  plm policy apply FILE [--db LOCATION] [--reason TEXT]
  plm policy show [VERSION] [--db LOCATION] [--json]
  plm policy history [--db LOCATION] [-n N] [--json]
  plm policy diff [A [B]] [--db LOCATION] [--json]
  plm policy check FILE [--json]
  plm policy eval FILE --action A --resource R --identity JSON [--risk LEVEL]
                  [--tenant T] [--attributes JSON] [--json]
  plm policy test FILE CASES [--json]
  plm policy schema

COMMANDS:
  apply    Validate FILE and store it as the next version, unless the active version has
           the same content (hash); audited as policy.applied by the system identity, the
           operating-system user ($USER) recorded as the reason. Servers and workers pick
           the new version up within seconds. Lint findings are printed as warnings
  show     Print the active version (or VERSION) as JSON on stdout, what it is on stderr
  history  Print the newest versions, newest first: version, time, hash, who, why
  diff     Print the rules added (+), removed (-) and changed (~) from A to B. A and B are
           version numbers or policy files; default: the version before the active one,
           and the active one; one argument: from it to the active version
  check    Validate FILE and lint it: rules unreachable behind a catch-all, rules shadowed
           by an earlier rule with the same effect and a wider match, patterns and
           conditions that can never match. Exit 1 with the findings
  eval     Decide one request under FILE: the decision, the matched rules and the reason
  test     Decide each case of CASES (JSON: a list, or {"cases": [...]}, each
           {"name", "request": {identity, action, resource, risk?, tenant?, attributes?},
           "expect": "allow" | {decision, matchedRuleIds?, code?}}) under FILE; print
           PASS or FAIL per case; exit 1 when any fails
  schema   Print the JSON Schema of policy files (docs/policy.schema.json)

OPTIONS:
      --db LOCATION      A SQLite file or a postgres://user@host/db URL
                         (default: $PLM_DB, else plm.db); apply creates and migrates it,
                         the others only read it
      --reason TEXT      apply: why, recorded after the user (default: none)
      --json             Print JSON: one document, or JSON lines for history and test
  -n, --lines N          history: how many versions, 1..1000 (default: 20)
      --action A         eval: the action, such as bom.update (required)
      --resource R       eval: the resource, such as bom:42 (required)
      --identity JSON    eval: who asks, {"subject", "actorKind", "roles", "scopes",
                         "tenant"?} (required)
      --risk LEVEL       eval: low, medium, high or critical (default: low)
      --tenant T         eval: the resource's tenant (default: the identity's)
      --attributes JSON  eval: attributes the conditions test, an object (default: {})
  -h, --help             Show this help

EXIT CODES:
  0 success; 1 an error, findings (check) or a failed case (test); 2 a usage error`;

/** The most bytes of a policy or cases file read (canonical JSON is bounded further). */
const MAX_FILE_BYTES = 4 * 1024 * 1024;

/**
 * The `plm policy` command.
 *
 * @example Evaluate a request under a policy file
 * ```ts
 * import { main } from "@tracepulse/plm-engine-core/cli";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/policy.json`, JSON.stringify({
 *   rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }],
 * }));
 * const out: string[] = [];
 * const io = { out: (l: string) => out.push(l), err: () => {}, readStdin: () => Promise.resolve(""), env: () => undefined };
 * const identity = JSON.stringify({ subject: "u", actorKind: "human", roles: [], scopes: [] });
 * const code = await main([
 *   "policy", "eval", `${dir}/policy.json`,
 *   "--action", "bom.read", "--resource", "bom:1", "--identity", identity,
 * ], io);
 * assert.equal(code, 0);
 * assert.equal(out[0], "decision: allow");
 * ```
 */
export const policyCommand: CliCommand = {
  summary: "Apply, show and diff the policy set in the store; check, eval and test files",
  help: HELP,
  async run(args, io) {
    const parsed = parse(args);
    const [sub, ...positionals] = parsed.positionals;
    const v = parsed.values;
    const json = v.json === true;
    switch (sub) {
      case "apply":
        return await apply(one(positionals, "FILE"), v, io);
      case "show": {
        const [version, extra] = positionals;
        if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
        await using store = await openForReading(storeLocation(str(v.db), io));
        const policies = new PolicyStore(store);
        const policy = version === undefined
          ? await policies.require()
          : await policies.byVersion(parseVersion(version));
        if (policy === undefined) {
          throw new PlmError("ERR_POLICY_NOT_FOUND", `No policy version ${version} in the store`);
        }
        if (json) {
          io.out(JSON.stringify(describe(policy)));
        } else {
          io.err(headline(policy));
          io.out(JSON.stringify(policy.policySet, null, 2));
        }
        return 0;
      }
      case "history": {
        if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
        const limit = parseCount(str(v.lines) ?? "20", "-n", 1, INPUT_LIMITS.listLimit);
        await using store = await openForReading(storeLocation(str(v.db), io));
        for (const policy of await new PolicyStore(store).history({ limit })) {
          const { policySet: _, ...meta } = describe(policy);
          io.out(json ? JSON.stringify(meta) : headline(policy));
        }
        return 0;
      }
      case "diff":
        return await diff(positionals, v, io);
      case "check":
        return await check(one(positionals, "FILE"), json, io);
      case "eval":
        return await evaluate(one(positionals, "FILE"), v, io);
      case "test": {
        const [file, cases, extra] = positionals;
        if (file === undefined || cases === undefined) {
          throw new UsageError("test needs FILE and CASES");
        }
        if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
        return await runCases(file, cases, json, io);
      }
      case "schema":
        if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
        io.out(JSON.stringify(policySetJsonSchema(), null, 2));
        return 0;
      case undefined:
        throw new UsageError(
          "missing subcommand: apply, show, history, diff, check, eval, test or schema",
        );
      default:
        throw new UsageError(`unknown subcommand '${sub}'`);
    }
  },
};

type Values = ReturnType<typeof parse>["values"];

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        db: { type: "string" },
        reason: { type: "string" },
        json: { type: "boolean" },
        lines: { type: "string", short: "n" },
        action: { type: "string" },
        resource: { type: "string" },
        identity: { type: "string" },
        risk: { type: "string" },
        tenant: { type: "string" },
        attributes: { type: "string" },
      },
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

async function apply(file: string, v: Values, io: CliIo): Promise<number> {
  const policySet = validatePolicyContent(await readPolicyFile(file));
  // Within the bounds of canonical JSON before anything else (lint is quadratic in rules).
  canonicalJson(policySet as unknown as JsonValue, { field: "policySet" });
  for (const finding of lintPolicySet(policySet)) {
    io.err(`warning: ${formatFinding(file, finding)}`);
  }
  const user = io.env("USER") || io.env("LOGNAME") || io.env("USERNAME") || osUser();
  const why = str(v.reason);
  const reason = `applied by ${user} with plm policy apply${why === undefined ? "" : `: ${why}`}`;
  await using store = await openStore(storeLocation(str(v.db), io));
  const audit = new AuditLog(store);
  const policies = new PolicyStore(store, { audit });
  // An operator command on the database itself: it acts as the system, audited as such.
  const result = await withSystemIdentity(reason, () => policies.apply(policySet, { reason }), {
    audit,
  });
  // No worker may be running: chain the records now (PostgreSQL), so readers see them at once.
  await audit.seal();
  const { version, hash } = result.policy;
  if (v.json === true) {
    io.out(
      JSON.stringify({ version, hash, changed: result.changed, rules: policySet.rules.length }),
    );
    return 0;
  }
  io.out(
    result.changed
      ? `policy version ${version} applied (hash ${hash}, ${policySet.rules.length} rules)`
      : `policy unchanged: version ${version} already has this content (hash ${hash})`,
  );
  return 0;
}

async function diff(positionals: string[], v: Values, io: CliIo): Promise<number> {
  if (positionals.length > 2) throw new UsageError(`unexpected argument '${positionals[2]}'`);
  const isVersion = (arg: string | undefined) => arg === undefined || /^\d+$/.test(arg);
  let store: Awaited<ReturnType<typeof openForReading>> | undefined;
  try {
    if (positionals.length < 2 || positionals.some(isVersion)) {
      store = await openForReading(storeLocation(str(v.db), io));
    }
    const policies = store === undefined ? undefined : new PolicyStore(store);
    const active = policies === undefined ? undefined : await policies.require();
    const side = async (
      arg: string | undefined,
      fallback: number,
    ): Promise<[string, PolicySet]> => {
      if (arg !== undefined && !isVersion(arg)) return [arg, await readValidated(arg)];
      const version = arg === undefined ? fallback : parseVersion(arg);
      if (version < 1) {
        throw new PlmError(
          "ERR_POLICY_NOT_FOUND",
          "Cannot diff: the store holds only version 1 (name a version or a file to compare)",
        );
      }
      const stored = await policies!.byVersion(version);
      if (stored === undefined) {
        throw new PlmError("ERR_POLICY_NOT_FOUND", `No policy version ${version} in the store`);
      }
      return [`version ${version}`, stored.policySet];
    };
    const [a, b] = positionals;
    const [fromName, from] = await side(a, (active?.version ?? 1) - 1);
    const [toName, to] = await side(b, active?.version ?? 1);
    const result = diffPolicySets(from, to);
    if (v.json === true) {
      io.out(JSON.stringify({ fromName, toName, ...result }));
    } else {
      for (const line of diffLines(fromName, toName, result)) io.out(line);
    }
    return 0;
  } finally {
    await store?.close();
  }
}

function diffLines(fromName: string, toName: string, d: PolicyDiff): string[] {
  return [
    `--- ${fromName} (${d.from})`,
    `+++ ${toName} (${d.to})`,
    ...d.added.map((id) => `+ ${id}`),
    ...d.removed.map((id) => `- ${id}`),
    ...d.changed.map((id) => `~ ${id}`),
    ...(d.reordered ? ["rules reordered"] : []),
    ...(d.metadataChanged ? ["id or description changed"] : []),
    ...(d.from === d.to ? ["no changes"] : []),
  ];
}

async function check(file: string, json: boolean, io: CliIo): Promise<number> {
  const text = await readPolicyFile(file);
  let policySet: PolicySet;
  try {
    policySet = validatePolicyContent(text);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    const issues = err.issues.length > 0 ? err.issues : [{ path: [], message: err.message }];
    if (json) io.out(JSON.stringify({ ok: false, issues, findings: [] }));
    else for (const issue of issues) io.out(`${file}: ${formatIssues([issue])}`);
    return 1;
  }
  const findings = lintPolicySet(policySet);
  if (json) {
    io.out(JSON.stringify({ ok: findings.length === 0, issues: [], findings }));
  } else {
    for (const finding of findings) io.out(formatFinding(file, finding));
    if (findings.length === 0) {
      io.out(
        `${file}: ok (${policySet.rules.length} rules, hash ${
          new PolicyEngine(policySet).version
        })`,
      );
    }
  }
  return findings.length === 0 ? 0 : 1;
}

async function evaluate(file: string, v: Values, io: CliIo): Promise<number> {
  const action = str(v.action);
  const resource = str(v.resource);
  const identityText = str(v.identity);
  if (action === undefined || resource === undefined || identityText === undefined) {
    throw new UsageError("eval needs --action, --resource and --identity");
  }
  const engine = new PolicyEngine(await readValidated(file));
  const request = parseArgument(PolicyRequestSchema, {
    identity: parseArgument(IdentitySchema, parseJson(identityText, "--identity"), "--identity"),
    action,
    resource,
    ...(str(v.risk) === undefined ? {} : { risk: str(v.risk) }),
    ...(str(v.tenant) === undefined ? {} : { tenant: str(v.tenant) }),
    ...(str(v.attributes) === undefined
      ? {}
      : { attributes: parseJson(str(v.attributes)!, "--attributes") }),
  }, "request");
  const verdict = engine.decide(request);
  if (v.json === true) {
    io.out(JSON.stringify(verdict));
    return 0;
  }
  io.out(`decision: ${verdict.decision}`);
  io.out(
    `matched: ${
      verdict.matchedRuleIds.length === 0 ? "(none)" : verdict.matchedRuleIds.join(", ")
    }`,
  );
  io.out(`reason: ${verdict.reason}`);
  if (verdict.approval !== undefined) io.out(`approval: ${JSON.stringify(verdict.approval)}`);
  if (verdict.code !== undefined) io.out(`code: ${verdict.code}`);
  io.out(`policy: ${verdict.policyVersion}`);
  return 0;
}

const expectSchema = z.union([
  z.enum(POLICY_EFFECTS),
  z.strictObject({
    decision: z.enum(POLICY_EFFECTS),
    matchedRuleIds: z.array(z.string()).exactOptional(),
    code: z.string().exactOptional(),
  }),
]);
const caseSchema = z.strictObject({
  name: z.string().max(INPUT_LIMITS.textLength).exactOptional(),
  request: PolicyRequestSchema as unknown as z.ZodType<PolicyRequest>,
  expect: expectSchema,
});
const casesSchema = z.array(caseSchema).max(100_000);

interface CaseResult {
  readonly name: string;
  readonly pass: boolean;
  readonly expected: z.infer<typeof expectSchema>;
  readonly verdict: Verdict;
}

async function runCases(
  file: string,
  casesFile: string,
  json: boolean,
  io: CliIo,
): Promise<number> {
  const engine = new PolicyEngine(await readValidated(file));
  const field = `CASES ${casesFile}`;
  const document = parseJson(await readFileBounded("CASES", casesFile), field);
  // A list of cases, or {"cases": [...]}.
  const listed = document !== null && typeof document === "object" && !Array.isArray(document) &&
      Object.keys(document).length === 1 && "cases" in document
    ? { value: (document as { cases: unknown }).cases, name: `${field} cases` }
    : { value: document, name: field };
  const cases = parseArgument(casesSchema, listed.value, listed.name);
  const results: CaseResult[] = cases.map((c, index) => {
    const verdict = engine.decide(c.request);
    const expected = c.expect;
    const want = typeof expected === "string" ? { decision: expected } : expected;
    const pass = verdict.decision === want.decision &&
      (want.matchedRuleIds === undefined ||
        JSON.stringify(verdict.matchedRuleIds) === JSON.stringify(want.matchedRuleIds)) &&
      (want.code === undefined || verdict.code === want.code);
    return { name: c.name ?? `case ${index + 1}`, pass, expected, verdict };
  });
  for (const r of results) {
    if (json) {
      io.out(JSON.stringify(r));
    } else if (r.pass) {
      io.out(`PASS ${r.name}`);
    } else {
      const want = typeof r.expected === "string" ? { decision: r.expected } : r.expected;
      io.out(
        `FAIL ${r.name}: expected ${JSON.stringify(want)}, got ${
          JSON.stringify({
            decision: r.verdict.decision,
            matchedRuleIds: r.verdict.matchedRuleIds,
            ...(r.verdict.code === undefined ? {} : { code: r.verdict.code }),
          })
        } (${r.verdict.reason})`,
      );
    }
  }
  const failed = results.filter((r) => !r.pass).length;
  (json ? io.err : io.out)(`${results.length - failed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

function describe(policy: StoredPolicy): {
  version: number;
  hash: string;
  appliedAt: string;
  appliedBy: string;
  reason: string | null;
  rules: number;
  policySet: JsonValue;
} {
  return {
    version: policy.version,
    hash: policy.hash,
    appliedAt: new Date(policy.appliedAt).toISOString(),
    appliedBy: policy.appliedBy,
    reason: policy.reason,
    rules: policy.policySet.rules.length,
    policySet: policy.policySet as unknown as JsonValue,
  };
}

function headline(policy: StoredPolicy): string {
  return `version ${policy.version}  ${
    new Date(policy.appliedAt).toISOString()
  }  ${policy.hash}  ` +
    `${policy.appliedBy}${policy.reason === null ? "" : `  ${policy.reason}`}`;
}

function formatFinding(file: string, finding: PolicyFinding): string {
  const issue: SchemaIssue = {
    path: [...finding.path],
    message: `${finding.kind}: ${finding.message}`,
  };
  return `${file}: ${formatIssues([issue])}`;
}

/** Reads and validates a policy file: `ERR_POLICY_INVALID` naming the bad fields. */
async function readValidated(file: string): Promise<PolicySet> {
  return validatePolicyContent(await readPolicyFile(file));
}

function readPolicyFile(file: string): Promise<string> {
  return readFileBounded("FILE", file);
}

/**
 * Reads a file named on the command line, refusing one over {@link MAX_FILE_BYTES} before
 * reading it, and bytes that are not UTF-8.
 */
async function readFileBounded(name: string, path: string): Promise<string> {
  let bytes: Uint8Array;
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) throw invalidArgument(`${name} ${path}`, "not a file");
    if (info.size > MAX_FILE_BYTES) {
      throw invalidArgument(`${name} ${path}`, `larger than ${MAX_FILE_BYTES} bytes`);
    }
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof PlmError) throw err;
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      throw err; // ERR_PERMISSION
    }
    throw invalidArgument(`${name} ${path}`, `cannot read it (${(err as Error).message})`);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw invalidArgument(`${name} ${path}`, "not UTF-8 text");
  }
}

function parseJson(text: string, field: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalidArgument(field, `not JSON (${(err as Error).message})`);
  }
}

function parseVersion(text: string): number {
  if (!/^\d+$/.test(text)) {
    throw new UsageError(`VERSION must be a positive integer, got '${text}'`);
  }
  return parseCount(text, "VERSION", 1);
}

/** The operating-system user's name, when the environment does not say it. */
function osUser(): string {
  try {
    return userInfo().username || "unknown";
  } catch {
    return "unknown"; // no --allow-sys, or no passwd entry
  }
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function one(positionals: string[], name: string): string {
  const [first, ...extra] = positionals;
  if (first === undefined) throw new UsageError(`missing ${name}`);
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`);
  return first;
}
