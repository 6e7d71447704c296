import assert from "node:assert/strict";
import { openApiDocument } from "../../server/mod.ts";
import { testApp } from "./_app.ts";

interface Operation {
  security: unknown;
  responses: Record<string, { content: Record<string, unknown> }>;
}

interface OpenApiDoc {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, { required: string[]; additionalProperties: boolean }> };
}

const COMMITTED = new URL("../../docs/openapi.json", import.meta.url);

Deno.test("docs/openapi.json is the document the code generates (run `deno task openapi`)", async () => {
  await using t = await testApp();
  const committed = JSON.parse(await Deno.readTextFile(COMMITTED));
  assert.deepEqual(
    openApiDocument(t.app),
    committed,
    "docs/openapi.json is stale: run `deno task openapi` and commit it",
  );
});

Deno.test("GET /openapi.json serves the OpenAPI 3.1 document, without a token", async () => {
  await using t = await testApp();
  const res = await t.call("GET", "/openapi.json");
  assert.equal(res.status, 200);
  const doc: OpenApiDoc = await res.json();
  assert.deepEqual(doc as unknown, openApiDocument(t.app));
  assert.equal(doc.openapi, "3.1.0");
  for (
    const path of [
      "/v1/runs",
      "/v1/runs/{id}",
      "/v1/runs/{id}/events",
      "/v1/runs/{id}/cancel",
      "/v1/approvals",
      "/v1/approvals/{id}",
      "/v1/approvals/{id}/decisions",
      "/v1/audit/head",
      "/v1/audit/verify",
      "/healthz",
      "/readyz",
    ]
  ) assert.ok(path in doc.paths, path);
  // The request body is the library's task contract: only action and resource are required.
  assert.deepEqual(doc.components.schemas["SubmitRunBody"]?.required, ["action", "resource"]);
  assert.equal(doc.components.schemas["SubmitRunBody"]?.additionalProperties, false);
  // Every /v1 route needs the bearer token and documents its problems.
  const post = doc.paths["/v1/runs"]?.["post"];
  assert.deepEqual(post?.security, [{ bearerAuth: [] }]);
  assert.ok("application/problem+json" in (post?.responses["422"]?.content ?? {}));
});
