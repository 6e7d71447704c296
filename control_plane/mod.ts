/**
 * The control plane decides what is allowed: identity, governance, autonomy,
 * human approval, run lifecycle, trace propagation, audit log and the SQLite
 * store. It imports `shared/` only and never `agent_runtime/`.
 *
 * @module
 */
// The shared contracts, named, so a user of this entry point needs no second import.
export {
  ACTOR_KINDS,
  type ActorKind,
  ActorKindSchema,
  assertNever,
  canonicalJson,
  type CanonicalJsonOptions,
  checkInteger,
  checkText,
  type Clock,
  digestJson,
  ERROR_CODES,
  type ErrorCode,
  FakeClock,
  FakeTimers,
  formatIssues,
  type Identity,
  IdentitySchema,
  INPUT_LIMITS,
  invalidArgument,
  isPlmError,
  JSON_LIMITS,
  type JsonValue,
  parseArgument,
  PlmError,
  type PlmErrorOptions,
  type Random,
  type SafeParseResult,
  type Schema,
  type SchemaIssue,
  sha256Hex,
  sleep,
  type SleepOptions,
  systemClock,
  systemTimer,
  type Timer,
  unsafeTextReason,
} from "../shared/mod.ts";
export * from "./governance/mod.ts";
export * from "./autonomy/mod.ts";
export * from "./trace/mod.ts";
export * from "./store/mod.ts";
export * from "./audit/mod.ts";
export * from "./identity/public.ts";
export * from "./runs/mod.ts";
export * from "./hitl/mod.ts";
export * from "./control_plane.ts";
