// The Server page in a real browser against the real binary: its figures move when
// mutations happen and when dashboards open, kept fresh by the update stream (the page
// never reloads, and asks for the figures only after a `serverStats` notification).

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import {
  assertNoBrowserProblems,
  launchBrowser,
  mutate,
  openPage,
  outPath,
  startStalecast,
  trpcRequests,
  uniqueName,
} from "./lib.mjs";

/** The figures are sampled every 3 s (`domain::stats::INTERVAL`): a few intervals. */
const FRESH_MS = 12_000;

async function figure(page, testId) {
  return (await page.locator(`[data-testid="${testId}"]`).first().textContent()).trim();
}

/** Waits until `read()` satisfies `ok`; fails with the last value seen after `ms`. */
async function until(read, ok, ms, what) {
  const deadline = Date.now() + ms;
  let value;
  while (Date.now() < deadline) {
    value = await read();
    if (ok(value)) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`${what}: still ${JSON.stringify(value)} after ${ms} ms`);
}

describe("the Server page", () => {
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

  test("shows live figures that move when mutations happen and dashboards open", async () => {
    const page = await openPage(browser, app.base, "/server");
    await page.evaluate(() => {
      window.__sameDocument = true;
    });
    // Its own stream, once a sample after it opened has been announced.
    const streams = await until(async () => Number(await figure(page, "stat-streams")), (n) => n >= 1, FRESH_MS, "open streams");
    const total = Number(await figure(page, "stat-notifications-total"));
    // The polling node, the cloud's services and every collection are listed.
    assert.equal(await page.locator('[data-testid="stats-nodes"] .pill').first().textContent(), "polls");
    await until(
      () => page.locator('[data-testid="stats-services"] tr[data-service="compute"] .pill').textContent().catch(() => null),
      (status) => status === "200",
      FRESH_MS,
      "compute's last answer",
    );
    // One row per collection of the cloud: projects, servers, volumes, images, networks,
    // snapshots, subnets, flavors.
    assert.equal(await page.locator('[data-testid="stats-collections"] tbody tr').count(), 8);

    // Three volumes created elsewhere: the total counts them, the rate and p99 show them.
    for (let i = 0; i < 3; i++) {
      await mutate(app.base, "storage.volumes.create", { projectId: "prj-web", name: uniqueName("e2e-stats"), sizeGb: 1 });
    }
    const moved = await until(
      async () => Number(await figure(page, "stat-notifications-total")),
      (n) => n >= total + 3,
      FRESH_MS,
      `notifications total (from ${total})`,
    );
    console.log(`# Server page: notifications ${total} → ${moved}`);
    const p99 = await until(() => figure(page, "stat-delivery-p99"), (text) => /ms$/.test(text), FRESH_MS, "delivery p99");
    console.log(`# Server page: delivery p99 ${p99}`);

    // Another dashboard opens: one more stream.
    const other = await openPage(browser, app.base, "/volumes");
    await until(async () => Number(await figure(page, "stat-streams")), (n) => n >= streams + 1, FRESH_MS, "open streams");
    await other.close();
    await until(async () => Number(await figure(page, "stat-streams")), (n) => n === streams, FRESH_MS, "open streams after close");

    assert.equal(await page.evaluate(() => window.__sameDocument), true, "the page was not reloaded");
    const asked = trpcRequests(page).filter((r) => r.split(",").includes("server.stats")).length;
    assert.ok(asked >= 3, `the figures were fetched again after each change (${asked} times)`);
    const path = outPath("server.png");
    await page.screenshot({ path });
    console.log(`# screenshot of the Server page: ${path}`);
    await page.close();
  });
});
