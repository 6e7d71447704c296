/**
 * `plm auth`: issue and verify HS256 bearer tokens.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type Identity, PlmError } from "../shared/mod.ts";
import {
  Hs256JwtIdentityProvider,
  type IssueTokenClaims,
  TOKEN_ACTOR_KINDS,
  type TokenActorKind,
} from "../control_plane/identity/public.ts";
import { type CliCommand, type CliIo, UsageError } from "./io.ts";

const MAX_TTL_SECONDS = 86_400;

const HELP = `plm auth: issue and verify HS256 bearer tokens

USAGE:
  plm auth issue-token --subject <SUB> --actor-kind <KIND> [OPTIONS]
  plm auth verify [TOKEN] [OPTIONS]

  issue-token prints only the token (--json: {"token": T}). verify reads TOKEN from the argument or,
  when there is none, from standard input (trimmed) and prints the identity as
  JSON (with or without --json); a refused token exits 1 with "error: <CODE>: <message>".
  The secret (at least 32 bytes) comes from PLM_JWT_SECRET or --secret-file,
  never from a flag value.

OPTIONS:
  --subject <SUB>       issue-token: the sub claim (required)
  --actor-kind <KIND>   issue-token: human, agent or service (required)
  --role <ROLE>         issue-token: a role; repeat for more (default: none)
  --scope <SCOPES>      issue-token: a scope or a space-separated list;
                        repeatable (default: none)
  --tenant <TENANT>     issue-token: the tenant claim (default: none)
  --ttl <SECONDS>       issue-token: lifetime, 1 to ${MAX_TTL_SECONDS} (default: 3600)
  --issuer <ISS>        iss to issue or require (default: $PLM_JWT_ISSUER, else none)
  --audience <AUD>      aud to issue or require (default: $PLM_JWT_AUDIENCE, else none)
  --secret-file <PATH>  read the secret from PATH, one trailing newline dropped
                        (default: the PLM_JWT_SECRET environment variable)
  --json                stdout is one JSON document
  -h, --help            Show this help

ENVIRONMENT:
  PLM_JWT_SECRET    the HS256 secret, used when --secret-file is not given
  PLM_JWT_ISSUER    the default of --issuer
  PLM_JWT_AUDIENCE  the default of --audience`;

/** Where the secret comes from, and the issuer and audience. */
export interface KeyArgs {
  readonly secretFile: string | undefined;
  readonly issuer: string | undefined;
  readonly audience: string | undefined;
}

/** Parsed `plm auth issue-token` arguments. */
interface IssueArgs extends KeyArgs {
  readonly claims: IssueTokenClaims;
  readonly ttlSeconds: number | undefined;
  readonly json: boolean;
}

/** Parsed `plm auth verify` arguments. */
interface VerifyArgs extends KeyArgs {
  readonly token: string | undefined;
}

/** The options every command that verifies tokens takes. */
export const KEY_OPTIONS = {
  "issuer": { type: "string" },
  "audience": { type: "string" },
  "secret-file": { type: "string" },
} as const;

/** `--json`, which both `auth` subcommands accept. */
const JSON_OPTION = { json: { type: "boolean" } } as const;

/** The `plm auth` command. */
export const authCommand: CliCommand = {
  summary: "Issue and verify bearer tokens",
  help: HELP,
  async run(args, io) {
    const [sub, ...rest] = args;
    switch (sub) {
      case "issue-token": {
        const parsed = parseIssueArgs(rest, io.env);
        const provider = await makeProvider(parsed, io);
        let token: string;
        try {
          token = await provider.issueToken(
            parsed.claims,
            parsed.ttlSeconds === undefined ? {} : { ttlSeconds: parsed.ttlSeconds },
          );
        } catch (err) {
          if (err instanceof RangeError || err instanceof TypeError) {
            throw new UsageError(err.message);
          }
          throw err;
        }
        io.out(parsed.json ? JSON.stringify({ token }) : token);
        return 0;
      }
      case "verify": {
        const parsed = parseVerifyArgs(rest, io.env);
        const provider = await makeProvider(parsed, io);
        const token = parsed.token ?? (await io.readStdin()).trim();
        const identity = await provider.verifyToken(token);
        io.out(JSON.stringify(identity));
        return 0;
      }
      case undefined:
        throw new UsageError("missing subcommand: issue-token or verify");
      default:
        throw new UsageError(`unknown subcommand '${sub}': expected issue-token or verify`);
    }
  },
};

/** Parses `issue-token` arguments; `env` supplies the issuer and audience defaults. */
function parseIssueArgs(args: string[], env: (name: string) => string | undefined): IssueArgs {
  const { values } = parse(args, {
    "subject": { type: "string" },
    "actor-kind": { type: "string" },
    "role": { type: "string", multiple: true },
    "scope": { type: "string", multiple: true },
    "tenant": { type: "string" },
    "ttl": { type: "string" },
    ...KEY_OPTIONS,
    ...JSON_OPTION,
  }, false);
  const subject = values["subject"];
  if (typeof subject !== "string" || subject === "") {
    throw new UsageError("missing --subject");
  }
  const actorKind = values["actor-kind"];
  if (typeof actorKind !== "string") throw new UsageError("missing --actor-kind");
  if (!(TOKEN_ACTOR_KINDS as readonly string[]).includes(actorKind)) {
    throw new UsageError(
      `--actor-kind must be one of ${TOKEN_ACTOR_KINDS.join(", ")}, not '${actorKind}'` +
        (actorKind === "system" ? " (the system identity is never put in a token)" : ""),
    );
  }
  const ttl = values["ttl"];
  let ttlSeconds: number | undefined;
  if (typeof ttl === "string") {
    ttlSeconds = /^[1-9][0-9]*$/.test(ttl) ? Number(ttl) : Number.NaN;
    if (!(ttlSeconds >= 1 && ttlSeconds <= MAX_TTL_SECONDS)) {
      throw new UsageError(
        `--ttl must be a whole number from 1 to ${MAX_TTL_SECONDS}, not '${ttl}'`,
      );
    }
  }
  const tenant = values["tenant"];
  if (tenant === "") throw new UsageError("--tenant must not be empty");
  const roles = asList(values["role"]);
  const scopes = asList(values["scope"]).flatMap((s) => s.split(/\s+/)).filter((s) => s !== "");
  return {
    ...keyArgs(values, env),
    claims: {
      subject,
      actorKind: actorKind as TokenActorKind,
      roles,
      scopes,
      ...(typeof tenant === "string" ? { tenant } : {}),
    },
    ttlSeconds,
    json: values["json"] === true,
  };
}

/** Parses `verify` arguments; `env` supplies the issuer and audience defaults. */
function parseVerifyArgs(args: string[], env: (name: string) => string | undefined): VerifyArgs {
  const { values, positionals } = parse(args, { ...KEY_OPTIONS, ...JSON_OPTION }, true);
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`);
  return { ...keyArgs(values, env), token: positionals[0] };
}

export type ParsedValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

function parse(
  args: string[],
  options: Parameters<typeof parseArgs>[0] extends infer C
    ? C extends { options?: infer O } ? NonNullable<O> : never
    : never,
  allowPositionals: boolean,
): { values: ParsedValues; positionals: string[] } {
  for (const arg of args) {
    if (arg === "--secret" || arg.startsWith("--secret=")) {
      throw new UsageError(
        "a secret is never taken from a flag value: set PLM_JWT_SECRET or pass --secret-file",
      );
    }
  }
  try {
    const { values, positionals } = parseArgs({ args, options, allowPositionals, strict: true });
    return { values: values as ParsedValues, positionals };
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

/** Reads the key options (`--secret-file`, `--issuer`, `--audience`) with their environment defaults. */
export function keyArgs(values: ParsedValues, env: (name: string) => string | undefined): KeyArgs {
  const pick = (flag: string, variable: string): string | undefined => {
    const value = values[flag];
    if (typeof value === "string") {
      if (value === "") throw new UsageError(`--${flag} must not be empty`);
      return value;
    }
    const fromEnv = env(variable);
    return fromEnv === undefined || fromEnv === "" ? undefined : fromEnv;
  };
  const secretFile = values["secret-file"];
  return {
    secretFile: typeof secretFile === "string" ? secretFile : undefined,
    issuer: pick("issuer", "PLM_JWT_ISSUER"),
    audience: pick("audience", "PLM_JWT_AUDIENCE"),
  };
}

function asList(value: ParsedValues[string]): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).filter((v): v is string => typeof v === "string");
}

/**
 * Builds the token provider from `--secret-file` (else `PLM_JWT_SECRET`),
 * `--issuer` and `--audience` (else `PLM_JWT_ISSUER`, `PLM_JWT_AUDIENCE`).
 *
 * @param args The key options.
 * @param io Where the environment comes from.
 * @returns The provider.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` when there is no secret or it is too short.
 */
export async function makeProvider(args: KeyArgs, io: CliIo): Promise<Hs256JwtIdentityProvider> {
  let secret: string | undefined;
  if (args.secretFile !== undefined) {
    try {
      secret = (await Deno.readTextFile(args.secretFile)).replace(/\r?\n$/, "");
    } catch (err) {
      throw new PlmError(
        "ERR_INVALID_ARGUMENT",
        `Cannot read the secret file ${args.secretFile}: ${
          err instanceof Error ? err.message : String(err)
        }`,
        { cause: err },
      );
    }
  } else {
    secret = io.env("PLM_JWT_SECRET");
  }
  if (secret === undefined || secret === "") {
    throw new PlmError(
      "ERR_INVALID_ARGUMENT",
      "No secret to sign or verify tokens: set PLM_JWT_SECRET or pass --secret-file <PATH>",
    );
  }
  try {
    return new Hs256JwtIdentityProvider({
      secret,
      ...(args.issuer === undefined ? {} : { issuer: args.issuer }),
      ...(args.audience === undefined ? {} : { audience: args.audience }),
    });
  } catch (err) {
    if (err instanceof RangeError) {
      throw new PlmError("ERR_INVALID_ARGUMENT", `The secret is too short: ${err.message}`);
    }
    throw err;
  }
}

/**
 * The caller's identity: the `PLM_TOKEN` token, verified with the key options
 * (`--secret-file`, else `PLM_JWT_SECRET`; `--issuer`, `--audience`). Fails
 * closed without a token.
 *
 * @param values The parsed options (the key options are read from them).
 * @param io Where `PLM_TOKEN` and the secret come from.
 * @returns The verified identity.
 * @throws {PlmError} `ERR_IDENTITY_REQUIRED` without a token, the provider's codes when it is
 * refused.
 */
export async function callerIdentity(values: ParsedValues, io: CliIo): Promise<Identity> {
  const token = io.env("PLM_TOKEN");
  if (token === undefined || token === "") {
    throw new PlmError(
      "ERR_IDENTITY_REQUIRED",
      "No identity: set PLM_TOKEN to a token from 'plm auth issue-token'",
    );
  }
  const provider = await makeProvider(keyArgs(values, io.env), io);
  return await provider.verifyToken(token.trim());
}
