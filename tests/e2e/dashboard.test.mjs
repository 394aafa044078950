// The dashboard in a real browser (Debian's chromium) against the real `stalecast` binary:
// changes reach open pages without reload and fast, only what a page shows is refetched,
// a restart is survived, and API errors reach the user.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import {
  Cloud,
  api,
  POLL_MS,
  allowBrowserProblems,
  assertNoBrowserProblems,
  launchBrowser,
  mutate,
  openPage,
  outPath,
  signInThroughPage,
  startSimulator,
  startStalecast,
  timeUntilVisible,
  trpcRequests,
  trpcSettled,
  uniqueName,
} from "./lib.mjs";

const LIVE = '[data-testid="connection-state"][data-state="live"]';
const RECONNECTING = '[data-testid="connection-state"][data-state="reconnecting"]';

function row(page, name) {
  return page.locator(`tr[data-name="${name}"]`);
}

/** Opens the "New volume" form and types `name`; answers the form and its submit button. */
async function fillVolumeForm(page, name) {
  await page.getByRole("button", { name: "New volume" }).click();
  const form = page.locator('form[aria-label="New volume"]');
  await form.locator('input[name="name"]').fill(name);
  return { form, submit: form.getByRole("button", { name: "Create volume" }) };
}

describe("the dashboard, with the embedded simulator", () => {
  let app;
  let browser;
  let cloud;

  before(async () => {
    app = await startStalecast();
    cloud = new Cloud(app.simUrl);
    browser = await launchBrowser();
  });

  // A server that crashed, or a page that hit a CSP violation, a console error or an
  // uncaught error, fails the test it happened in, not just the suite's end.
  afterEach(async () => {
    app.assertRunning();
    await assertNoBrowserProblems();
  });

  after(async () => {
    await browser?.close();
    await app?.stop();
  });

  test("a volume created in page A appears in page B within 1 s, without reload", async () => {
    const a = await openPage(browser, app.base, "/volumes");
    const b = await openPage(browser, app.base, "/volumes");
    await b.evaluate(() => {
      window.__sameDocument = true;
    });
    const name = uniqueName("e2e-a");
    const { submit } = await fillVolumeForm(a, name);
    const started = performance.now();
    await submit.click();
    await row(b, name).waitFor({ timeout: 1000 });
    const took = Math.round(performance.now() - started);
    console.log(`# volume created in page A visible in page B after ${took} ms`);
    assert.ok(took < 1000, `took ${took} ms`);
    assert.equal(await b.evaluate(() => window.__sameDocument), true, "page B was not reloaded");
    await a.close();
    await b.close();
  });

  test("a change made directly in the cloud appears within one poll interval + 1 s", async () => {
    const page = await openPage(browser, app.base, "/volumes");
    const name = uniqueName("e2e-oob");
    await cloud.login();
    const started = performance.now();
    await cloud.createVolume(name);
    await row(page, name).waitFor({ timeout: POLL_MS + 1000 });
    const took = Math.round(performance.now() - started);
    console.log(`# volume created in the simulator visible after ${took} ms (poll interval ${POLL_MS} ms)`);
    assert.ok(took < POLL_MS + 1000, `took ${took} ms`);
    await page.close();
  });

  test("a snapshot made in the cloud by another client appears on the Snapshots page without reload", async () => {
    const page = await openPage(browser, app.base, "/snapshots");
    await page.evaluate(() => {
      window.__sameDocument = true;
    });
    await page.locator('[data-testid="snapshots-table"]').waitFor();
    // An available volume of web-team's (Cinder snapshots those without force).
    const volumes = await api(
      app.base,
      `/trpc/storage.volumes.page?input=${encodeURIComponent(JSON.stringify({ projectId: "prj-web", status: "available", sort: "-name", limit: 1 }))}`,
    ).then((r) => r.json());
    const volumeId = volumes.result.data.items[0].id;
    const name = uniqueName("e2e-snap");
    const started = performance.now();
    await cloud.createSnapshot(name, volumeId);
    await row(page, name).waitFor({ timeout: POLL_MS + 1000 });
    const took = Math.round(performance.now() - started);
    console.log(`# snapshot created in the simulator visible on the Snapshots page after ${took} ms (poll interval ${POLL_MS} ms)`);
    assert.ok(took < POLL_MS + 1000, `took ${took} ms`);
    // The cloud finishes it: the row follows, still without a reload.
    await row(page, name).locator('[data-status="available"]').waitFor({ timeout: 5000 + POLL_MS });
    assert.equal(await page.evaluate(() => window.__sameDocument), true, "the page was not reloaded");
    await page.close();
  });

  test("a page showing volumes and servers refetches only the list whose type changed", async () => {
    // The volumes page also lists servers: it names the server each volume is attached to.
    const page = await openPage(browser, app.base, "/volumes");
    const attached = page.locator('[data-testid="attached-to"] .cell-name').first();
    await attached.waitFor({ timeout: 5000 });
    // Volumes earlier tests created finish creating first (each of those is an update too).
    await page.waitForFunction(() => !document.querySelector('[data-status="creating"]'), null, { timeout: 10_000 });
    await trpcSettled(page);
    const sent = trpcRequests(page);

    // A volume changes: the volumes page is refetched (or patched), the servers list is not.
    const only = (prefix, requests) => {
      assert.ok(requests.length > 0, "no request followed the update");
      for (const r of requests) assert.ok(r.startsWith(prefix), `${r} followed a change of another type`);
    };
    let mark = sent.length;
    const name = uniqueName("e2e-only-volumes");
    await mutate(app.base, "storage.volumes.create", { projectId: "prj-data", name, sizeGb: 2 });
    await row(page, name).waitFor({ timeout: 5000 });
    await trpcSettled(page);
    console.log(`# requests after a volume change on the volumes page: ${JSON.stringify(sent.slice(mark))}`);
    only("storage.volumes.", sent.slice(mark));
    // The cloud finishes creating it (the poller's update): once more, volumes alone.
    mark = sent.length;
    await row(page, name).locator('[data-status="available"]').waitFor({ timeout: 5000 });
    await trpcSettled(page);
    only("storage.volumes.", sent.slice(mark));

    // A server changes: the servers list is refetched or patched, the volumes page is not.
    mark = sent.length;
    const serverEvents = page.locator('[data-testid="event-log"] li[data-type="servers"]');
    const seen = await serverEvents.count();
    const servers = (await (await api(app.base, "/trpc/compute.servers.list")).json()).result.data;
    const active = servers.find((s) => s.status === "ACTIVE");
    await mutate(app.base, "compute.servers.stop", { id: active.id });
    await serverEvents.nth(seen).waitFor({ timeout: 5000 });
    await trpcSettled(page);
    console.log(`# requests after a server change on the volumes page: ${JSON.stringify(sent.slice(mark))}`);
    only("compute.servers.", sent.slice(mark));
    await page.close();
  });

  test("API errors are shown to the user", async () => {
    const page = await openPage(browser, app.base, "/volumes");
    const toast = page.locator('[data-testid="error-toast"]');
    // The two failed creates below are deliberate, and chromium logs each failed fetch as
    // a console error: allow those two failures and nothing else.
    allowBrowserProblems(
      page,
      /^console error on \/volumes: Failed to load resource: the server responded with a status of 400 \(Bad Request\) \(at http:\/\/[^/\s]+\/trpc\/storage\.volumes\.create\?batch=1\)$/,
      /^console error on \/volumes: Failed to load resource: the server responded with a status of 502 \(Bad Gateway\) \(at http:\/\/[^/\s]+\/trpc\/storage\.volumes\.create\?batch=1\)$/,
    );

    // Input the server rejects: a blank name.
    const { form, submit } = await fillVolumeForm(page, "   ");
    await submit.click();
    await toast.filter({ hasText: "input.name" }).waitFor({ timeout: 3000 });
    assert.match(await toast.first().innerText(), /BAD_REQUEST/);
    assert.ok(await form.isVisible(), "the form stays open to fix the input");

    // The cloud failing: every upstream request answers 500.
    await cloud.setFaults({ errorRate: 1 });
    try {
      await form.locator('input[name="name"]').fill(uniqueName("e2e-fault"));
      await submit.click();
      await toast.filter({ hasText: "BAD_GATEWAY" }).waitFor({ timeout: 5000 });
      const text = await toast.filter({ hasText: "BAD_GATEWAY" }).innerText();
      console.log(`# error shown: ${text.replace(/\s+/g, " ")}`);
      assert.match(text, /Creating the volume failed/);
    } finally {
      await cloud.setFaults({});
    }
    await page.close();
  });

  test("screenshot of the dashboard", async () => {
    const page = await openPage(browser, app.base, "/servers");
    const servers = (await (await api(app.base, "/trpc/compute.servers.list")).json()).result.data;
    const stopped = servers.filter((s) => s.status === "SHUTOFF").slice(0, 2);
    for (const server of stopped) await mutate(app.base, "compute.servers.start", { id: server.id });
    await cloud.createVolume(uniqueName("nightly-backup"), "prj-data");
    await mutate(app.base, "compute.servers.create", { projectId: "prj-web", name: "web-canary", imageId: "img-debian-13" });
    await page.locator('tr[data-name="web-canary"]').waitFor({ timeout: 2000 });
    await page.waitForTimeout(400);
    const path = outPath("dashboard.png");
    await page.screenshot({ path });
    console.log(`# screenshot of the dashboard: ${path}`);
    await page.close();
  });
});

describe("the dashboard across a Stalecast restart", () => {
  let sim;
  let app;
  let browser;

  before(async () => {
    // The cloud runs on its own so that it outlives Stalecast's restart.
    sim = await startSimulator();
    app = await startStalecast({ upstream: sim.url });
    browser = await launchBrowser();
  });

  afterEach(async () => {
    sim.assertRunning();
    app.assertRunning();
    await assertNoBrowserProblems();
  });

  after(async () => {
    await browser?.close();
    await app?.stop();
    await sim?.stop();
  });

  test("the page shows reconnecting; the restarted server knows no session: sign in again, then live, with the data changed while it was away", async () => {
    const page = await openPage(browser, app.base, "/volumes");
    // The old session's cookie, sent to the new process, is answered 401 (chromium logs it).
    allowBrowserProblems(page, /^console error on \/volumes: Failed to load resource: the server responded with a status of 401 \(Unauthorized\)/);
    // One change first, so the page has an event id to resume from.
    const first = uniqueName("e2e-before");
    await mutate(app.base, "storage.volumes.create", { projectId: "prj-web", name: first, sizeGb: 1 });
    await row(page, first).waitFor({ timeout: 2000 });

    const port = app.port;
    await app.stop();
    const down = await timeUntilVisible(page.locator(RECONNECTING), 5000);
    console.log(`# badge shows "reconnecting" ${down} ms after the server stopped`);

    const away = uniqueName("e2e-away");
    await new Cloud(sim.url).createVolume(away);
    await page.waitForTimeout(500);
    assert.equal(await row(page, away).count(), 0, "not visible while Stalecast is down");

    app = await startStalecast({ port, upstream: sim.url });
    // Sessions live in the server's memory: the page says its session ended, and the user
    // signs in again where they were.
    const notice = page.locator('[data-testid="signin-notice"]');
    await notice.waitFor({ timeout: 20_000 });
    console.log(`# after the restart the page says: ${await notice.innerText()}`);
    await signInThroughPage(page, "admin", "stalecast");
    assert.equal(new URL(page.url()).pathname, "/volumes", "back where the user was");
    const live = await timeUntilVisible(page.locator(LIVE), 20_000);
    const shown = await timeUntilVisible(row(page, away), 3000);
    console.log(`# live again ${live} ms after the restart; the change made meanwhile shown ${shown} ms later`);
    // The new process cannot replay the old one's ids: it told the page to resync.
    await page.locator(".eventlog__item--resync").first().waitFor({ timeout: 1000 });
    await page.close();
  });
});
