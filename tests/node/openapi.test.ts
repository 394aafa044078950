// The OpenAPI document validates as OpenAPI 3.1 (a real validator), is what the server
// serves, and describes the procedures the stock client calls; the explorer is served.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import SwaggerParser from "@apidevtools/swagger-parser";
import { UPDATE_QUERY_MAP } from "@stalecast/bindings";
import { afterAll, beforeAll, expect, it } from "vitest";

import { startServer, type Server } from "./support/server";

const FILE = fileURLToPath(new URL("../../openapi/openapi.json", import.meta.url));
const committed = JSON.parse(readFileSync(FILE, "utf8"));

let server: Server;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server?.stop();
});

it("openapi/openapi.json validates as OpenAPI 3.1", async () => {
  const api = await SwaggerParser.validate(structuredClone(committed));
  expect((api as { openapi?: string }).openapi).toBe("3.1.0");
});

it("the validator rejects a broken document (it is not a no-op)", async () => {
  const broken = structuredClone(committed);
  broken.paths["/trpc/storage.volumes.list"].get.responses["200"].content["application/json"].schema.properties.result.properties.data.items.$ref = "#/components/schemas/Nope";
  await expect(SwaggerParser.validate(broken)).rejects.toThrow(/Nope/);
  const invalid = structuredClone(committed);
  invalid.paths["/trpc/storage.volumes.list"].get.parameters[0].in = "body";
  await expect(SwaggerParser.validate(invalid)).rejects.toThrow();
});

it("the server serves the committed document and the explorer", async () => {
  const served = await (await fetch(`${server.base}/openapi.json`)).json();
  expect(served).toEqual(committed);
  const docs = await fetch(`${server.base}/docs/`);
  expect(docs.status).toBe(200);
  expect(await docs.text()).toContain("swagger-ui-bundle.js");
});

it("documents every invalidated query as GET and the stream as text/event-stream", () => {
  for (const paths of Object.values(UPDATE_QUERY_MAP)) {
    for (const path of paths) expect(committed.paths[`/trpc/${path}`]?.get, path).toBeDefined();
  }
  const stream = committed.paths["/trpc/updates.onUpdate"].get;
  expect(Object.keys(stream.responses["200"].content)).toEqual(["text/event-stream"]);
  expect(committed.paths["/trpc/storage.volumes.create"].post.requestBody.required).toBe(true);
});
