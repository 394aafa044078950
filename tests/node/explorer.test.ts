// The explorer at /docs in a real browser (Debian's chromium): it lists every operation of
// the document, calls queries and mutations against the running server, and loads
// nothing from anywhere else.

import { chromium, type Browser, type Locator, type Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";

import { launchOptions } from "../harness/chromium.mjs";
import { startServer, type Server } from "./support/server";


let server: Server;
let browser: Browser;
let page: Page;
const foreign: string[] = [];
const calls: string[] = [];

beforeAll(async () => {
  server = await startServer();
  browser = await chromium.launch(launchOptions);
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  // Signed in, as a user who opens /docs from the dashboard is: the browser sends the cookie.
  const [name, value] = server.cookie.split("=") as [string, string];
  await page.context().addCookies([{ name, value, url: server.base, httpOnly: true, sameSite: "Lax" }]);
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.host !== new URL(server.base).host) foreign.push(request.url());
    if (url.pathname.startsWith("/trpc/")) calls.push(`${request.method()} ${url.pathname}${url.search}`);
  });
  await page.goto(`${server.base}/docs/`);
  await page.locator(".opblock").first().waitFor({ timeout: 15_000 });
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

/** Opens an operation, optionally edits its input, executes it and answers the response body. */
async function execute(operationId: string, edit?: (operation: Locator) => Promise<void>): Promise<unknown> {
  const operation = page.locator(".opblock").filter({ has: page.locator(`[data-path="/trpc/${operationId}"]`) });
  await operation.locator(".opblock-summary").first().click();
  await operation.locator(".opblock-body").waitFor();
  if ((await operation.locator("button.execute").count()) === 0) await operation.locator("button.try-out__btn").click();
  if (edit) await edit(operation);
  await operation.locator("button.execute").click();
  const body = operation.locator(".live-responses-table .response-col_description pre").first();
  await body.waitFor({ timeout: 10_000 });
  return JSON.parse(await body.innerText());
}

it("lists every operation of the document", async () => {
  const document = await (await fetch(`${server.base}/openapi.json`)).json();
  const operations = Object.values(document.paths as Record<string, object>).flatMap((item) => Object.keys(item));
  expect(await page.locator(".opblock").count()).toBe(operations.length);
});

it("calls a query with an input, a query without, and a mutation against the server", async () => {
  const volumes = (await execute("storage.volumes.list", async (operation) => {
    await operation.locator("textarea").first().fill('{"projectId":"prj-data"}');
  })) as { result: { data: { projectId: string }[] } };
  expect(volumes.result.data.length).toBeGreaterThan(0);
  expect(volumes.result.data.every((v) => v.projectId === "prj-data")).toBe(true);

  const state = (await execute("updates.state")) as { result: { data: { ringSize: number } } };
  expect(state.result.data.ringSize).toBe(4096);

  // The body editor starts from the schema's example (a valid volume).
  const created = (await execute("storage.volumes.create")) as { result: { data: { id: string; status: string } } };
  expect(created.result.data.status).toBe("creating");
  const listed = await (await fetch(`${server.base}/trpc/storage.volumes.get?input=${encodeURIComponent(JSON.stringify({ id: created.result.data.id }))}`, { headers: { cookie: server.cookie } })).json();
  expect(listed.result.data.id).toBe(created.result.data.id);

  expect(calls).toEqual([
    `GET /trpc/storage.volumes.list?input=${encodeURIComponent('{"projectId":"prj-data"}')}`,
    "GET /trpc/updates.state",
    "POST /trpc/storage.volumes.create",
  ]);
});

it("loads nothing from outside the server", () => {
  expect(foreign).toEqual([]);
});
