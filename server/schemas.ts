/**
 * The zod (and OpenAPI) schemas of the HTTP API's bodies. Requests reuse the
 * library's contracts ({@link TaskInputSchema}); responses describe the
 * library's own types exactly (`Run`, `Approval`, `AuditRecord`), so a value
 * the library returns is what the document promises (the tests parse real
 * ones with these schemas).
 *
 * @module
 */
import { z } from "@hono/zod-openapi";
import {
  ACTOR_KINDS,
  APPROVAL_KINDS,
  APPROVAL_STATES,
  AUDIT_CHAIN_PROBLEMS,
  EXPIRY_ACTIONS,
  INPUT_LIMITS,
  RISK_LEVELS,
  RUN_STATES,
  TaskInputSchema,
} from "../control_plane/mod.ts";

/** Any JSON value. */
const Json = z.unknown().openapi({ description: "Any JSON value" });

/** The zod shape of a zod object (only `shape` is used). */
type Shaped = { shape: Record<string, z.ZodType> };

/**
 * A zod object's shape with each `exactOptional` field made `optional` (JSON
 * has no `undefined`, so it accepts the same bodies), for the OpenAPI document
 * to list only the required fields as required.
 */
function jsonOptional(schema: unknown): Record<string, z.ZodType> {
  const shape = (schema as Shaped).shape;
  const out: Record<string, z.ZodType> = {};
  for (const [key, field] of Object.entries(shape)) {
    const def = (field as unknown as { def: { type: string; innerType?: z.ZodType } }).def;
    out[key] = def.type === "optional" && def.innerType !== undefined
      ? def.innerType.optional()
      : field;
  }
  return out;
}

/**
 * The body of `POST /v1/runs`: the library's `TaskInputSchema`, checked by the
 * same rules (unknown keys refused).
 *
 * @example The library's example task parses
 * ```ts
 * import { SubmitRunBodySchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(SubmitRunBodySchema.safeParse({ action: "bom.read", resource: "bom:1" }).success);
 * assert.ok(!SubmitRunBodySchema.safeParse({ action: "bom.read", resource: "bom:1", x: 1 }).success);
 * ```
 */
export const SubmitRunBodySchema = z.strictObject(jsonOptional(TaskInputSchema))
  .openapi("SubmitRunBody", {
    example: { action: "bom.update", resource: "bom:42", input: { qty: 3 }, risk: "medium" },
  });

/**
 * The body of `POST /v1/runs/{id}/cancel`.
 *
 * @example A reason is optional
 * ```ts
 * import { CancelRunBodySchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(CancelRunBodySchema.safeParse({}).success);
 * assert.ok(!CancelRunBodySchema.safeParse({ reason: 3 }).success);
 * ```
 */
export const CancelRunBodySchema = z.strictObject({
  reason: z.string().min(1).max(INPUT_LIMITS.reasonLength).optional(),
}).openapi("CancelRunBody");

/**
 * The body of `POST /v1/approvals/{id}/decisions`; a rejection needs a comment.
 *
 * @example A rejection without a comment is refused
 * ```ts
 * import { DecisionBodySchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * const digest = "a".repeat(64);
 * assert.ok(DecisionBodySchema.safeParse({ decision: "approve", digest }).success);
 * assert.ok(!DecisionBodySchema.safeParse({ decision: "reject", digest }).success);
 * ```
 */
export const DecisionBodySchema = z.strictObject({
  decision: z.enum(["approve", "reject"]),
  digest: z.string().min(1).max(128),
  comment: z.string().min(1).max(INPUT_LIMITS.reasonLength).optional(),
}).superRefine((body, ctx) => {
  if (body.decision === "reject" && body.comment === undefined) {
    ctx.addIssue({ code: "custom", path: ["comment"], message: "A rejection needs a comment" });
  }
}).openapi("DecisionBody");

const ActorSchema = z.object({
  subject: z.string(),
  kind: z.enum(ACTOR_KINDS),
}).openapi("AuditActor");

const RunTaskSchema = z.object({
  action: z.string(),
  resource: z.string(),
  capabilities: z.array(z.string()).readonly(),
  input: Json,
  risk: z.enum(RISK_LEVELS),
  attributes: z.record(z.string(), Json).readonly(),
}).openapi("RunTask");

/**
 * The library's `Run`, field for field.
 *
 * @example Every field of a run is described
 * ```ts
 * import { RunSchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(Object.keys(RunSchema.shape).includes("traceparent"));
 * ```
 */
export const RunSchema = z.strictObject({
  id: z.string(),
  state: z.enum(RUN_STATES),
  version: z.number().int(),
  task: RunTaskSchema,
  requester: z.strictObject({
    subject: z.string(),
    kind: z.string(),
    tenant: z.string().optional(),
  }),
  idempotencyKey: z.string().nullable(),
  traceparent: z.string(),
  tracestate: z.string(),
  attempt: z.number().int(),
  escalations: z.number().int(),
  costUnits: z.number(),
  agentId: z.string().nullable(),
  approvalId: z.string().nullable(),
  result: Json,
  error: z.strictObject({ code: z.string(), message: z.string() }).nullable(),
  createdAt: z.number().int(),
  updatedAt: z.number().int(),
  lease: z.strictObject({
    owner: z.string(),
    token: z.number().int(),
    expiresAt: z.number().int(),
  }).nullable(),
}).openapi("Run");

/**
 * A page of runs, newest first.
 *
 * @example An empty page
 * ```ts
 * import { RunPageSchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(RunPageSchema.safeParse({ items: [], nextCursor: null }).success);
 * ```
 */
export const RunPageSchema = z.strictObject({
  items: z.array(RunSchema),
  nextCursor: z.string().nullable(),
}).openapi("RunPage");

/**
 * The library's `AuditRecord`, field for field.
 *
 * @example The first record links to 64 zeros
 * ```ts
 * import { AuditRecordSchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(Object.keys(AuditRecordSchema.shape).includes("prevHash"));
 * ```
 */
export const AuditRecordSchema = z.strictObject({
  seq: z.number().int(),
  at: z.number().int(),
  actor: ActorSchema,
  action: z.string(),
  resource: z.string(),
  outcome: z.string(),
  reason: z.string().nullable(),
  runId: z.string().nullable(),
  traceId: z.string().nullable(),
  data: Json,
  prevHash: z.string(),
  hash: z.string(),
}).openapi("AuditRecord");

/**
 * A run's audit records, oldest first.
 *
 * @example No records
 * ```ts
 * import { RunEventsSchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(RunEventsSchema.safeParse({ items: [] }).success);
 * ```
 */
export const RunEventsSchema = z.strictObject({ items: z.array(AuditRecordSchema) })
  .openapi("RunEvents");

const ApprovalVoteSchema = z.strictObject({
  approver: ActorSchema,
  decision: z.enum(["approve", "reject"]),
  comment: z.string().nullable(),
  at: z.number().int(),
}).openapi("ApprovalVote");

const ApprovalSpecSchema = z.strictObject({
  approverRoles: z.array(z.string()).readonly(),
  quorum: z.number().int(),
  timeoutSeconds: z.number().int(),
  onExpiry: z.enum(EXPIRY_ACTIONS),
}).openapi("ApprovalSpec");

const approvalShape = {
  id: z.string(),
  runId: z.string(),
  kind: z.enum(APPROVAL_KINDS),
  state: z.enum(APPROVAL_STATES),
  spec: ApprovalSpecSchema,
  subject: Json.openapi({
    description: "What is asked: action, resource, input and risk (and mode when suggest-only)",
  }),
  digest: z.string(),
  requester: ActorSchema,
  traceId: z.string().nullable(),
  reason: z.string().nullable(),
  createdAt: z.number().int(),
  deadline: z.number().int(),
  decidedAt: z.number().int().nullable(),
  votes: z.array(ApprovalVoteSchema).readonly(),
};

/**
 * The library's `Approval`, field for field.
 *
 * @example The votes are part of it
 * ```ts
 * import { ApprovalSchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(Object.keys(ApprovalSchema.shape).includes("votes"));
 * ```
 */
export const ApprovalSchema = z.strictObject(approvalShape).openapi("Approval");

/**
 * An approval as listed to approvers: the library's `Approval` with the policy
 * decision that asked for it (the matched rules and the reason; empty and
 * `null` for an escalation).
 *
 * @example Rule ids are a list
 * ```ts
 * import { ApprovalViewSchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(Object.keys(ApprovalViewSchema.shape).includes("ruleIds"));
 * ```
 */
export const ApprovalViewSchema = z.strictObject({
  ...approvalShape,
  ruleIds: z.array(z.string()),
  policyReason: z.string().nullable(),
}).openapi("ApprovalView");

/**
 * The approvals a caller may decide.
 *
 * @example An empty list
 * ```ts
 * import { ApprovalListSchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(ApprovalListSchema.safeParse({ items: [] }).success);
 * ```
 */
export const ApprovalListSchema = z.strictObject({ items: z.array(ApprovalViewSchema) })
  .openapi("ApprovalList");

/**
 * The answer of a decision: the approval and its run after it.
 *
 * @example Both parts are required
 * ```ts
 * import { DecisionResultSchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(!DecisionResultSchema.safeParse({}).success);
 * ```
 */
export const DecisionResultSchema = z.strictObject({ approval: ApprovalSchema, run: RunSchema })
  .openapi("DecisionResult");

/**
 * The library's `AuditHead`.
 *
 * @example The empty log's head
 * ```ts
 * import { AuditHeadSchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(AuditHeadSchema.safeParse({ seq: 0, hash: "0".repeat(64) }).success);
 * ```
 */
export const AuditHeadSchema = z.strictObject({ seq: z.number().int(), hash: z.string() })
  .openapi("AuditHead");

/**
 * The library's `AuditVerifyResult`.
 *
 * @example A good chain
 * ```ts
 * import { AuditVerifySchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * const head = { seq: 0, hash: "0".repeat(64) };
 * assert.ok(AuditVerifySchema.safeParse({ ok: true, checked: 0, head, sealedThrough: 0, pending: 0 }).success);
 * ```
 */
export const AuditVerifySchema = z.union([
  z.strictObject({
    ok: z.literal(true),
    checked: z.number().int(),
    head: AuditHeadSchema,
    sealedThrough: z.number().int(),
    pending: z.number().int(),
  }),
  z.strictObject({
    ok: z.literal(false),
    checked: z.number().int(),
    firstBadSeq: z.number().int(),
    problem: z.enum(AUDIT_CHAIN_PROBLEMS),
    reason: z.string(),
    checkpointIndex: z.number().int().optional(),
    sealedThrough: z.number().int(),
    pending: z.number().int(),
  }),
]).openapi("AuditVerifyResult");

/**
 * `GET /healthz` and `GET /readyz` when all is well.
 *
 * @example Up
 * ```ts
 * import { HealthSchema } from "./schemas.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(HealthSchema.safeParse({ status: "ok" }).success);
 * ```
 */
export const HealthSchema = z.strictObject({
  status: z.literal("ok"),
  schemaVersion: z.number().int().optional().openapi({
    description: "readyz: the store's schema version",
  }),
  inFlight: z.number().int().optional().openapi({
    description: "healthz: the requests being handled, this one included",
  }),
}).openapi("Health");
