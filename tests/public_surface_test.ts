/**
 * The public surface, name by name: a change to what an entrypoint exports
 * must be a conscious one (update this list in the same change).
 */
import assert from "node:assert/strict";
import * as root from "../mod.ts";
import * as shared from "../shared/mod.ts";
import * as controlPlane from "../control_plane/mod.ts";
import * as agentRuntime from "../agent_runtime/mod.ts";
import * as identity from "../control_plane/identity/mod.ts";
import * as cli from "../cli.ts";

const SHARED = [
  "ACTOR_KINDS",
  "ActorKindSchema",
  "ERROR_CODES",
  "FakeClock",
  "FakeTimers",
  "INPUT_LIMITS",
  "IdentitySchema",
  "JSON_LIMITS",
  "PlmError",
  "assertNever",
  "canonicalJson",
  "checkInteger",
  "checkText",
  "digestJson",
  "formatIssues",
  "invalidArgument",
  "isPlmError",
  "parseArgument",
  "sha256Hex",
  "sleep",
  "systemClock",
  "systemTimer",
  "unsafeTextReason",
];

/** Exported by control_plane/mod.ts beyond shared/. */
const CONTROL_PLANE = [
  "ACTION_SEPARATORS",
  "ANONYMOUS_ACTOR",
  "APPROVAL_KINDS",
  "APPROVAL_STATES",
  "AUDIT_CHAIN_PROBLEMS",
  "AUDIT_GENESIS_HASH",
  "AUTONOMY_CHANGE_CAUSES",
  "AUTONOMY_LEVELS",
  "AUTONOMY_LEVEL_NAMES",
  "AUTONOMY_OUTCOMES",
  "ApprovalService",
  "ApprovalSpecSchema",
  "AuditCheckpointSchema",
  "AuditEntryInputSchema",
  "AuditLog",
  "AutonomyController",
  "AutonomyLevelSchema",
  "AutonomyPolicySchema",
  "BUDGET_KINDS",
  "BudgetTracker",
  "CHECKPOINT_PROBLEMS",
  "CLAIM_FAILURE_REASONS",
  "DEFAULT_CANCEL_RULES",
  "CONDITION_OPERATORS",
  "ControlPlane",
  "DEFAULT_AUTONOMY_APPROVAL",
  "EXPIRY_ACTIONS",
  "Hs256JwtIdentityProvider",
  "IdentityError",
  "MAX_NUMERIC_DATE",
  "MAX_TOKEN_LENGTH",
  "MIGRATIONS",
  "MIN_SECRET_BYTES",
  "POLICY_EFFECTS",
  "POLICY_FINDING_KINDS",
  "POLICY_LIMITS",
  "PolicyConditionSchema",
  "PolicyEngine",
  "PolicyError",
  "PolicyRequestSchema",
  "PolicyRuleSchema",
  "PolicySetSchema",
  "PolicyStore",
  "RATE_WINDOWS",
  "RESOURCE_SEPARATORS",
  "RISK_LEVELS",
  "RUN_STATES",
  "RUN_TRANSITIONS",
  "RunStore",
  "RunUsageSchema",
  "TASK_LIMITS",
  "TERMINAL_RUN_STATES",
  "TOKEN_ACTOR_KINDS",
  "TaskAttributesSchema",
  "TaskInputSchema",
  "TraceState",
  "VERDICT_CHANGES",
  "actorOf",
  "applyBudget",
  "checkTraceContext",
  "childTraceContext",
  "compareAutonomyLevels",
  "compileGlob",
  "computeAuditHash",
  "currentIdentity",
  "currentTraceContext",
  "diffPolicySets",
  "extractTraceContext",
  "foldAutonomy",
  "followPolicies",
  "generateCheckpointKeys",
  "formatTraceparent",
  "formatTracestate",
  "identityMiddleware",
  "importCheckpointPrivateKey",
  "importCheckpointPublicKey",
  "injectTraceContext",
  "isTerminal",
  "lintPolicySet",
  "loadPolicySet",
  "mayDecide",
  "newTraceContext",
  "openStore",
  "parseAutonomyPolicy",
  "parseCheckpoint",
  "parsePolicySet",
  "parseTraceparent",
  "parseTask",
  "parseTracestate",
  "policySetJsonSchema",
  "policySetVersion",
  "requireIdentity",
  "resolveActor",
  "signCheckpoint",
  "transition",
  "validatePolicyContent",
  "verifyCheckpoint",
  "withIdentity",
  "withTraceContext",
];

/** Exported by agent_runtime/mod.ts beyond control_plane/. */
const AGENT_RUNTIME = [
  "AgentError",
  "AgentRuntime",
  "CIRCUIT_STATES",
  "CircuitBreaker",
  "CircuitBreakers",
  "CircuitOpenError",
  "DEFAULT_NON_RETRYABLE_CODES",
  "Dispatcher",
  "EscalationLadder",
  "InFlightCounter",
  "JITTER_MODES",
  "NoAgentError",
  "RETRY_STOP_REASONS",
  "RetryExhaustedError",
  "RetryPolicy",
  "SELECTION_OUTCOMES",
  "defineAgent",
  "httpAgent",
  "nextDelay",
  "parseRetryAfter",
  "selectAgent",
  "toAgentError",
];

const names = (mod: object) => Object.keys(mod).sort();

Deno.test("shared/mod.ts exports exactly its contracts", () => {
  assert.deepEqual(names(shared), [...SHARED].sort());
});

Deno.test("control_plane/mod.ts exports shared and its own names, never withSystemIdentity", () => {
  assert.deepEqual(names(controlPlane), [...SHARED, ...CONTROL_PLANE].sort());
  assert.ok(!("withSystemIdentity" in controlPlane));
});

Deno.test("agent_runtime/mod.ts and the root mod.ts export the whole public surface", () => {
  const all = [...SHARED, ...CONTROL_PLANE, ...AGENT_RUNTIME].sort();
  assert.deepEqual(names(agentRuntime), all);
  assert.deepEqual(names(root), all);
  assert.ok(!("withSystemIdentity" in root));
});

Deno.test("control_plane/identity/mod.ts adds the system identity to the public identity names", () => {
  const own = names(identity).filter((n) => !(n in controlPlane));
  assert.deepEqual(own, ["SYSTEM_IDENTITY", "withSystemIdentity"]);
});

Deno.test("cli.ts exports main and the io helpers", () => {
  assert.deepEqual(names(cli), ["VERSION", "denoIo", "main"]);
});
