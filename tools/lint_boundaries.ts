/**
 * `deno task lint:boundaries`: enforces the import contracts of `boundaries.json`
 * on the module graph that `deno info --json` reports.
 *
 * Every `.ts` file under the configured `analyse` paths is a root, whether or
 * not a `mod.ts` reaches it. Code, type and literal dynamic imports are edges;
 * indirect paths count; a module `deno info` cannot load fails the run.
 *
 * Exit codes: 0 all contracts kept, 1 a contract broken or the graph has an
 * error, 2 a configuration error (bad file, exemption without ADR, stale exemption).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";

const IgnoreSchema = z.strictObject({
  from: z.string().min(1),
  to: z.string().min(1),
  adr: z.string().regex(/^docs\/adr\/.+\.md$/, "must cite an ADR file under docs/adr/"),
});

const ContractSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    name: z.string().min(1),
    kind: z.literal("forbidden"),
    from: z.array(z.string().min(1)).min(1),
    to: z.array(z.string().min(1)).min(1),
    ignore: z.array(IgnoreSchema).default([]),
  }),
  z.strictObject({
    name: z.string().min(1),
    kind: z.literal("forbidden-specifier"),
    pattern: z.string().min(1),
    ignore: z.array(IgnoreSchema).default([]),
  }),
  z.strictObject({
    name: z.string().min(1),
    kind: z.literal("protected"),
    module: z.string().min(1),
    symbol: z.string().regex(/^[A-Za-z_$][\w$]*$/),
    allow: z.array(z.string().min(1)),
    ignore: z.array(IgnoreSchema).default([]),
  }),
  z.strictObject({
    name: z.string().min(1),
    kind: z.literal("private"),
    except: z.array(z.string().min(1)).default([]),
    ignore: z.array(IgnoreSchema).default([]),
  }),
]);

const ConfigSchema = z.strictObject({
  analyse: z.array(z.string().min(1)).min(1),
  contracts: z.array(ContractSchema).min(1),
});

/** The parsed `boundaries.json`. */
export type BoundariesConfig = z.infer<typeof ConfigSchema>;
type Contract = BoundariesConfig["contracts"][number];

/** A forbidden import found in the graph. */
export interface Violation {
  /** The contract broken. */
  contract: string;
  /** The importing file, relative to the root. */
  importer: string;
  /** 1-based line of the import specifier. */
  line: number;
  /** 1-based column of the import specifier. */
  col: number;
  /** The import text as written. */
  specifier: string;
  /** The module imported, relative to the root when local. */
  target: string;
  /** The whole path from importer to the forbidden module, when longer than one edge. */
  chain?: string[];
}

/** A module `deno info` could not load. */
export interface GraphError {
  /** The module that failed, or the file whose import failed. */
  module: string;
  /** Where, when known: `path:line:col`. */
  at?: string;
  /** Why. */
  message: string;
}

/** The outcome of a lint run. */
export interface LintReport {
  /** Each contract with its violations. */
  contracts: { name: string; kept: boolean; violations: Violation[] }[];
  /** Modules that failed to load. */
  errors: GraphError[];
  /** How many contracts were kept. */
  kept: number;
  /** How many were broken. */
  broken: number;
}

/** A configuration problem: exit code 2. */
export class ConfigError extends Error {
  /**
   * Creates a configuration error.
   *
   * @param message What is wrong with the configuration.
   */
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly raw: string;
  readonly line: number;
  readonly col: number;
}

interface Span {
  start: { line: number; character: number };
}
interface Resolution {
  specifier?: string;
  error?: string;
  span?: Span;
}
interface InfoModule {
  specifier: string;
  error?: string;
  local?: string;
  npmPackage?: string;
  dependencies?: {
    specifier: string;
    code?: Resolution;
    type?: Resolution;
    npmPackage?: string;
  }[];
}
interface DenoInfo {
  modules: InfoModule[];
  redirects: Record<string, string>;
  npmPackages?: Record<string, { name: string; dependencies: string[] }>;
}

/** Options of {@link lintBoundaries}. */
export interface LintOptions {
  /** The repository root. */
  root: string;
  /** The configuration file. Defaults to `<root>/boundaries.json`. */
  configPath?: string;
}

/**
 * Builds the graph of `root` with `deno info --json` and checks every contract.
 *
 * @param options Where the tree and its configuration are.
 * @returns The report; see {@link formatReport}.
 * @throws {ConfigError} On a bad configuration, an exemption without an ADR, or a stale exemption.
 */
export async function lintBoundaries(options: LintOptions): Promise<LintReport> {
  const root = options.root.replace(/\/+$/, "");
  const configPath = options.configPath ?? `${root}/boundaries.json`;
  const config = await readConfig(root, configPath);
  const files = await listFiles(root, config.analyse);
  if (files.length === 0) throw new ConfigError("no .ts file under the analysed paths");
  const info = await denoInfo(root, files);
  return analyse(root, config, info, (path) => Deno.readTextFileSync(`${root}/${path}`));
}

async function readConfig(root: string, path: string): Promise<BoundariesConfig> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    throw new ConfigError(`cannot read ${path}: ${err instanceof Error ? err.message : err}`);
  }
  const parsed = ConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`${path}: ${issue?.path.join(".")}: ${issue?.message}`);
  }
  for (const contract of parsed.data.contracts) {
    for (const entry of contract.ignore) {
      try {
        if (!Deno.statSync(`${root}/${entry.adr}`).isFile) throw new Error("not a file");
      } catch {
        throw new ConfigError(
          `${contract.name}: exemption ${entry.from} -> ${entry.to} cites ${entry.adr}, which does not exist`,
        );
      }
    }
  }
  const names = parsed.data.contracts.map((c) => c.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new ConfigError(`contract ${dup} is declared twice`);
  return parsed.data;
}

async function listFiles(root: string, paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    let stat: Deno.FileInfo;
    try {
      stat = await Deno.stat(`${root}/${rel}`);
    } catch {
      return;
    }
    if (stat.isFile) {
      if (/\.(m?ts|tsx)$/.test(rel)) out.push(rel);
      return;
    }
    for await (const entry of Deno.readDir(`${root}/${rel}`)) {
      await walk(`${rel.replace(/\/$/, "")}/${entry.name}`);
    }
  }
  for (const path of paths) await walk(path);
  return [...new Set(out)].sort();
}

async function denoInfo(root: string, files: readonly string[]): Promise<DenoInfo> {
  const dir = await Deno.makeTempDir({ prefix: "lint_boundaries_" });
  try {
    const entry = `${dir}/root.ts`;
    await Deno.writeTextFile(
      entry,
      files.map((f) => `import ${JSON.stringify(toUrl(root, f))};`).join("\n") + "\n",
    );
    const args = ["info", "--json"];
    try {
      Deno.statSync(`${root}/deno.json`);
      args.push("--config", `${root}/deno.json`);
    } catch { /* no configuration: plain resolution */ }
    args.push(entry);
    const result = await new Deno.Command(Deno.execPath(), {
      args,
      cwd: root,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    if (!result.success) {
      throw new ConfigError(`deno info failed: ${new TextDecoder().decode(result.stderr).trim()}`);
    }
    return JSON.parse(new TextDecoder().decode(result.stdout)) as DenoInfo;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function toUrl(root: string, rel: string): string {
  return new URL(`file://${root.startsWith("/") ? "" : "/"}${root}/${rel}`).href;
}

/**
 * Checks the contracts on an already-built `deno info --json` graph. Pure apart
 * from `readSource`, which the protected-symbol contract uses to see what an
 * import statement takes.
 *
 * @param root The repository root (absolute path).
 * @param config The parsed configuration.
 * @param info The parsed output of `deno info --json`.
 * @param readSource Reads a root-relative file.
 * @returns The report.
 * @throws {ConfigError} When an exemption matches no import (stale).
 */
export function analyse(
  root: string,
  config: BoundariesConfig,
  info: DenoInfo,
  readSource: (path: string) => string,
): LintReport {
  const rootUrl = toUrl(root, "");
  const rel = (specifier: string) =>
    specifier.startsWith(rootUrl) ? decodeURIComponent(specifier.slice(rootUrl.length)) : specifier;
  const resolve = (specifier: string) => info.redirects[specifier] ?? specifier;

  const modules = new Map<string, InfoModule>();
  for (const m of info.modules) modules.set(m.specifier, m);

  const edges = new Map<string, Edge[]>();
  const errors: GraphError[] = [];
  const local = new Set<string>();
  for (const m of info.modules) {
    if (!m.specifier.startsWith(rootUrl)) continue;
    const from = rel(m.specifier);
    local.add(from);
    const out: Edge[] = [];
    for (const dep of m.dependencies ?? []) {
      for (const res of [dep.code, dep.type]) {
        if (res === undefined) continue;
        const line = (res.span?.start.line ?? 0) + 1;
        const col = (res.span?.start.character ?? 0) + 1;
        if (res.error !== undefined || res.specifier === undefined) {
          errors.push({
            module: from,
            at: `${from}:${line}:${col}`,
            message: res.error ?? "unresolved",
          });
          out.push({ from, to: dep.specifier, raw: dep.specifier, line, col });
          continue;
        }
        const to = rel(resolve(res.specifier));
        // deno info merges every statement naming one specifier: report the earliest span.
        const i = out.findIndex((e) => e.to === to && e.raw === dep.specifier);
        const edge = { from, to, raw: dep.specifier, line, col };
        if (i === -1) out.push(edge);
        else if (line < out[i]!.line || (line === out[i]!.line && col < out[i]!.col)) out[i] = edge;
      }
    }
    edges.set(from, out);
  }
  // Modules that failed to load, named at each import that reaches them.
  for (const m of info.modules) {
    if (m.error === undefined) continue;
    const target = rel(m.specifier);
    const importers = [...edges.values()].flat().filter((e) => e.to === target);
    if (importers.length === 0) errors.push({ module: target, message: m.error });
    for (const e of importers) {
      errors.push({ module: target, at: `${e.from}:${e.line}:${e.col}`, message: m.error });
    }
  }

  const under = (path: string, prefixes: readonly string[]) =>
    prefixes.some((p) => p.endsWith("/") ? path.startsWith(p) : path === p);

  function shortestPath(start: string, goal: (node: string) => boolean): string[] | undefined {
    const previous = new Map<string, string | null>([[start, null]]);
    const queue = [start];
    for (let i = 0; i < queue.length; i++) {
      const node = queue[i]!;
      if (goal(node)) {
        const path: string[] = [];
        for (let n: string | null = node; n !== null; n = previous.get(n) ?? null) path.unshift(n);
        return path;
      }
      for (const e of edges.get(node) ?? []) {
        if (!previous.has(e.to)) {
          previous.set(e.to, node);
          queue.push(e.to);
        }
      }
    }
    return undefined;
  }

  const importersOf = new Map<string, string[]>();
  for (const out of edges.values()) {
    for (const e of out) {
      const list = importersOf.get(e.to);
      if (list === undefined) importersOf.set(e.to, [e.from]);
      else list.push(e.from);
    }
  }

  function checkForbidden(c: Extract<Contract, { kind: "forbidden" }>): Violation[] {
    // Every module that reaches a forbidden one, found once by walking the edges backwards.
    const reaches = new Set([...edges.keys(), ...importersOf.keys()].filter((n) => under(n, c.to)));
    for (const node of reaches) {
      for (const importer of importersOf.get(node) ?? []) reaches.add(importer);
    }
    const found: Violation[] = [];
    for (const [from, out] of edges) {
      if (!under(from, c.from)) continue;
      for (const e of out) {
        if (!reaches.has(e.to)) continue;
        if (under(e.to, c.from) && !under(e.to, c.to)) continue; // reported where it leaves
        const path = shortestPath(e.to, (n) => under(n, c.to));
        if (path === undefined) continue;
        found.push(violation(c.name, e, path.length > 1 ? [from, ...path] : undefined));
      }
    }
    return found;
  }

  function checkSpecifier(c: Extract<Contract, { kind: "forbidden-specifier" }>): Violation[] {
    const pattern = new RegExp(c.pattern, "i");
    const npm = info.npmPackages ?? {};
    const found: Violation[] = [];
    for (const out of edges.values()) {
      for (const e of out) {
        if (pattern.test(e.raw) || pattern.test(e.to)) {
          found.push(violation(c.name, e));
          continue;
        }
        const pkg = modules.get(resolve(e.to))?.npmPackage ?? modules.get(e.to)?.npmPackage;
        if (pkg === undefined) continue;
        // Walk the npm dependency closure: a workbench package pulled in transitively counts.
        const seen = new Map<string, string | null>([[pkg, null]]);
        const queue = [pkg];
        for (let i = 0; i < queue.length; i++) {
          const id = queue[i]!;
          if (pattern.test(npm[id]?.name ?? id)) {
            const chain: string[] = [];
            for (let n: string | null = id; n !== null; n = seen.get(n) ?? null) chain.unshift(n);
            found.push(violation(c.name, e, [e.from, ...chain]));
            break;
          }
          for (const dep of npm[id]?.dependencies ?? []) {
            if (!seen.has(dep)) {
              seen.set(dep, id);
              queue.push(dep);
            }
          }
        }
      }
    }
    return found;
  }

  function checkProtected(c: Extract<Contract, { kind: "protected" }>): Violation[] {
    // exposing: modules through which the symbol can be imported, with the next hop towards it.
    const exposing = new Map<string, string | null>([[c.module, null]]);
    const importers: { edge: Edge; line: number; col: number }[] = [];
    let changed = true;
    const visited = new Set<string>();
    while (changed) {
      changed = false;
      for (const [from, out] of edges) {
        for (const e of out) {
          if (!exposing.has(e.to)) continue;
          const key = `${from}\0${e.to}\0${e.raw}`;
          if (visited.has(key)) continue;
          visited.add(key);
          const source = readSource(from);
          for (const use of importsOf(source, e.raw, c.symbol)) {
            importers.push({ edge: e, line: use.line, col: use.col });
            if (use.reexports && !exposing.has(from)) {
              exposing.set(from, e.to);
              changed = true;
            }
          }
        }
      }
    }
    return importers
      .filter(({ edge }) => edge.from !== c.module && !under(edge.from, c.allow))
      .map(({ edge, line, col }) => {
        const chain = [edge.from];
        for (let n: string | null = edge.to; n !== null; n = exposing.get(n) ?? null) chain.push(n);
        return violation(c.name, { ...edge, line, col }, chain.length > 2 ? chain : undefined);
      });
  }

  function checkPrivate(c: Extract<Contract, { kind: "private" }>): Violation[] {
    const dir = (p: string) => p.slice(0, p.lastIndexOf("/") + 1);
    const found: Violation[] = [];
    for (const out of edges.values()) {
      for (const e of out) {
        if (!local.has(e.to) || under(e.from, c.except)) continue;
        const name = e.to.slice(e.to.lastIndexOf("/") + 1);
        if (name.startsWith("_") && dir(e.to) !== dir(e.from)) found.push(violation(c.name, e));
      }
    }
    return found;
  }

  const contracts = config.contracts.map((c) => {
    let violations: Violation[];
    switch (c.kind) {
      case "forbidden":
        violations = checkForbidden(c);
        break;
      case "forbidden-specifier":
        violations = checkSpecifier(c);
        break;
      case "protected":
        violations = checkProtected(c);
        break;
      case "private":
        violations = checkPrivate(c);
        break;
    }
    for (const entry of c.ignore) {
      const matches = (v: Violation) =>
        v.importer === entry.from && (v.target === entry.to || v.specifier === entry.to);
      if (!violations.some(matches)) {
        throw new ConfigError(
          `${c.name}: exemption ${entry.from} -> ${entry.to} (${entry.adr}) matches no import; remove it`,
        );
      }
      violations = violations.filter((v) => !matches(v));
    }
    return { name: c.name, kept: violations.length === 0, violations };
  });
  // A workbench import that cannot resolve is reported by its contract, not twice.
  const reported = new Set(
    contracts.flatMap((c) => c.violations.map((v) => `${v.importer}:${v.line}:${v.col}`)),
  );
  const kept = contracts.filter((c) => c.kept).length;
  return {
    contracts,
    errors: errors.filter((e) => e.at === undefined || !reported.has(e.at)),
    kept,
    broken: contracts.length - kept,
  };
}

function violation(contract: string, e: Edge, chain?: string[]): Violation {
  const v: Violation = {
    contract,
    importer: e.from,
    line: e.line,
    col: e.col,
    specifier: e.raw,
    target: e.to,
  };
  if (chain !== undefined) v.chain = chain;
  return v;
}

/** How one import statement uses a symbol. */
interface SymbolUse {
  line: number;
  col: number;
  /** Whether the statement passes the symbol on (`export *`, `export { symbol } from`). */
  reexports: boolean;
}

/**
 * Finds the statements of `source` that import `specifier` and can reach
 * `symbol`: a named import or re-export of it, a namespace import, `export *`,
 * or a dynamic `import()`. A statement importing only other names is not a use.
 */
function importsOf(source: string, specifier: string, symbol: string): SymbolUse[] {
  const uses: SymbolUse[] = [];
  const quoted = new RegExp(`(["'])${specifier.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\1`, "g");
  const named = (clause: string) =>
    clause.split(",").some((part) =>
      part.trim().replace(/^type\s+/, "").split(/\s+as\s+/)[0]?.trim() === symbol
    );
  for (const match of source.matchAll(quoted)) {
    const before = source.slice(Math.max(0, match.index - 4000), match.index);
    const keyword = [...before.matchAll(/(?<![.\w$])(import|export)\b/g)].at(-1);
    if (keyword === undefined) continue;
    const stmt = before.slice(keyword.index).replace(/\/\/[^\n]*|\/\*[\s\S]*?\*\//g, " ").trim();
    let use: boolean;
    let reexports = false;
    let m: RegExpMatchArray | null;
    if (/^import\s*\($/.test(stmt)) use = true;
    else if (/^export\s+(type\s+)?\*(\s+as\s+[\w$]+)?\s+from$/.test(stmt)) use = reexports = true;
    else if ((m = stmt.match(/^export\s+(?:type\s+)?\{([^}]*)\}\s*from$/)) !== null) {
      use = reexports = named(m[1]!);
    } else if ((m = stmt.match(/^import\s+(?:type\s+)?([\s\S]*?)\s*from$/)) !== null) {
      const clause = m[1]!;
      const braces = clause.match(/\{([^}]*)\}/);
      use = /\*\s*as\s+/.test(clause) || (braces !== null && named(braces[1]!));
      if (use && new RegExp(`export\\s*\\{[^}]*\\b${symbol}\\b[^}]*\\}(?!\\s*from)`).test(source)) {
        reexports = true;
      }
    } else continue;
    if (!use) continue;
    const upto = source.slice(0, match.index);
    const line = upto.split("\n").length;
    uses.push({ line, col: match.index - upto.lastIndexOf("\n"), reexports });
  }
  return uses;
}

/**
 * Formats a report: one line per violation
 * (`CONTRACT: path:line:col imports SPECIFIER`), the chain under indirect ones,
 * graph errors, then `Contracts: N kept, M broken.`
 *
 * @param report The report of {@link lintBoundaries}.
 * @returns The text to print.
 */
export function formatReport(report: LintReport): string {
  const lines: string[] = [];
  for (const c of report.contracts) {
    for (const v of c.violations) {
      lines.push(`${v.contract}: ${v.importer}:${v.line}:${v.col} imports ${v.specifier}`);
      if (v.chain !== undefined) lines.push(`    via ${v.chain.join(" -> ")}`);
    }
  }
  for (const e of report.errors) {
    lines.push(`graph error: ${e.at ?? e.module}: ${e.module}: ${e.message.split("\n")[0]}`);
  }
  lines.push(`Contracts: ${report.kept} kept, ${report.broken} broken.`);
  if (report.errors.length > 0) lines.push(`Graph errors: ${report.errors.length}.`);
  return lines.join("\n");
}

/**
 * The command: `lint_boundaries.ts [--json] [--root DIR] [--config FILE]`.
 *
 * @param args Command-line arguments.
 * @returns The exit code.
 */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      options: {
        json: { type: "boolean", default: false },
        root: { type: "string", default: Deno.cwd() },
        config: { type: "string" },
      },
    }));
  } catch (err) {
    console.error(`error: ${err instanceof Error ? err.message : err}`);
    return 2;
  }
  const options: LintOptions = { root: values.root };
  if (values.config !== undefined) options.configPath = values.config;
  let report: LintReport;
  try {
    report = await lintBoundaries(options);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    if (values.json) console.log(JSON.stringify({ configError: err.message }));
    else console.error(`configuration error: ${err.message}`);
    return 2;
  }
  console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  return report.broken > 0 || report.errors.length > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
