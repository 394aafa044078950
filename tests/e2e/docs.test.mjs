// The API explorer at /docs (Swagger UI, compiled into the binary) in a real browser
// (Debian's chromium) under the server's Content-Security-Policy: it renders the
// operations, and a query executed from it answers 200, with no CSP violation, console
// error or uncaught error on the way.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { addSession, assertNoBrowserProblems, launchBrowser, newPage, outPath, startStalecast, withBrowserProblems } from "./lib.mjs";

/** The operation block of `operationId` (its route is `/trpc/<operationId>`). */
function operation(page, operationId) {
  return page.locator(".opblock").filter({ has: page.locator(`[data-path="/trpc/${operationId}"]`) });
}

describe("the API explorer at /docs", () => {
  let app;
  let browser;

  before(async () => {
    app = await startStalecast();
    browser = await launchBrowser();
  });

  afterEach(async () => {
    app.assertRunning();
    await assertNoBrowserProblems();
  });

  after(async () => {
    await browser?.close();
    await app?.stop();
  });

  test("renders the operations and executes a query, answered 200", async () => {
    const page = await newPage(browser, { viewport: { width: 1280, height: 900 } });
    // Signed in, as a user who opens the explorer from the dashboard: its calls carry the cookie.
    await addSession(page.context(), app.base, app.cookie);
    await withBrowserProblems(page, async () => {
      const response = await page.goto(`${app.base}/docs/`);
      assert.equal(response.status(), 200);
      assert.match(response.headers()["content-security-policy"] ?? "", /script-src 'self'/, "the explorer is served under the CSP");

      // The operations list, down to a mutation's block.
      await operation(page, "storage.volumes.create").waitFor({ timeout: 15_000 });

      // A query: expand it, give it an input, execute.
      const list = operation(page, "storage.volumes.list");
      await list.locator(".opblock-summary").first().click();
      await list.locator(".opblock-body").waitFor();
      // The explorer opens operations ready to try (tryItOutEnabled); else "Try it out" does.
      if ((await list.locator("button.execute").count()) === 0) await list.getByRole("button", { name: "Try it out" }).click();
      await list.locator("textarea").first().fill('{"projectId":"prj-data"}', { timeout: 5000 });
      const answered = page.waitForResponse((r) => new URL(r.url()).pathname === "/trpc/storage.volumes.list");
      await list.locator("button.execute").click();
      assert.equal((await answered).status(), 200);

      // Swagger UI renders the live response: status 200 and the envelope's data.
      const live = list.locator(".live-responses-table tbody .response").first();
      await live.waitFor({ timeout: 10_000 });
      assert.equal((await live.locator(".response-col_status").innerText()).trim(), "200");
      const body = JSON.parse(await live.locator(".response-col_description pre").first().innerText());
      assert.ok(body.result.data.length > 0, "the query answered some volumes");
      assert.ok(body.result.data.every((v) => v.projectId === "prj-data"), "filtered by the input");
    });

    const path = outPath("docs.png");
    await page.screenshot({ path, fullPage: false });
    console.log(`# screenshot of the explorer after executing storage.volumes.list: ${path}`);
    await page.close();
  });
});
