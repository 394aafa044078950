// Ten tabs of the dashboard in one browser (one profile, so one pool of six HTTP/1.1
// connections per host): every tab loads fast, they share one update stream, a change
// made in one shows in all, and when the tab holding the stream closes another takes it
// over without losing an update made meanwhile.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import {
  Cloud,
  addSession,
  api,
  assertNoBrowserProblems,
  launchBrowser,
  newTab,
  startStalecast,
  timeUntilVisible,
  uniqueName,
  withBrowserProblems,
} from "./lib.mjs";

const TABS = 10;
const LOAD_LIMIT_MS = 2000;
const BADGE = '[data-testid="connection-state"]';

/** The event streams the server has open (`/readyz`). */
async function openStreams(base) {
  const response = await fetch(`${base}/readyz`);
  return (await response.json()).streams;
}

/** Waits until the server has exactly `count` streams open; fails after `limitMs`. */
async function untilStreams(base, count, limitMs = 10_000) {
  const deadline = Date.now() + limitMs;
  let seen;
  while ((seen = await openStreams(base)) !== count) {
    if (Date.now() > deadline) throw new Error(`the server has ${seen} streams open, not ${count}, after ${limitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Each tab's role: "holder", "follower" or "alone". */
async function roles(tabs) {
  return Promise.all(tabs.map((tab) => tab.locator(BADGE).getAttribute("data-role")));
}

/** The bus's current seq, from the API (as another client would read it). */
async function busSeq(base) {
  const response = await api(base, "/trpc/updates.state");
  return (await response.json()).result.data.seq;
}

function row(page, name) {
  return page.locator(`tr[data-name="${name}"]`);
}

describe("ten tabs of one browser", () => {
  let app;
  let browser;
  let context;
  let cloud;

  before(async () => {
    app = await startStalecast();
    cloud = new Cloud(app.simUrl);
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await addSession(context, app.base, app.cookie);
  });

  afterEach(async () => {
    app.assertRunning();
    await assertNoBrowserProblems();
  });

  after(async () => {
    await context?.close();
    await browser?.close();
    await app?.stop();
  });

  test("each loads within 2 s, they share one stream, and it is handed over without losing an update", async () => {
    const tabs = [];
    const loadMs = [];
    for (let i = 0; i < TABS; i++) {
      const tab = await newTab(context);
      const started = performance.now();
      await withBrowserProblems(tab, async () => {
        await tab.goto(`${app.base}/volumes`, { timeout: LOAD_LIMIT_MS * 5 });
        await tab.locator(`${BADGE}[data-state="live"]`).waitFor({ timeout: LOAD_LIMIT_MS * 5 });
        await tab.locator("table tbody tr[data-id]").first().waitFor({ timeout: LOAD_LIMIT_MS * 5 });
      }).catch((error) => {
        error.message = `tab ${i + 1} (after ${loadMs.join(", ")} ms for the others): ${error.message}`;
        throw error;
      });
      loadMs.push(Math.round(performance.now() - started));
      tabs.push(tab);
    }
    console.log(`tab load times (ms): ${loadMs.join(", ")}`);
    for (const [i, ms] of loadMs.entries()) assert.ok(ms < LOAD_LIMIT_MS, `tab ${i + 1} took ${ms} ms to load and go live`);

    // One stream for all ten, held by one of them.
    await untilStreams(app.base, 1);
    const held = await roles(tabs);
    assert.equal(held.filter((r) => r === "holder").length, 1, `roles: ${held}`);
    assert.equal(held.filter((r) => r === "follower").length, TABS - 1, `roles: ${held}`);

    // A volume created in the first tab shows in the tenth.
    const name = uniqueName("tabs");
    await tabs[0].getByRole("button", { name: "New volume" }).click();
    const form = tabs[0].locator('form[aria-label="New volume"]');
    await form.locator('input[name="name"]').fill(name);
    await form.getByRole("button", { name: "Create volume" }).click();
    const shownMs = await timeUntilVisible(row(tabs[TABS - 1], name), 5000);
    console.log(`created in tab 1, shown in tab ${TABS} after ${shownMs} ms`);

    // Close the holder while the next stream is held back for a second, and change the
    // cloud meanwhile: the next holder resumes after the last seq it saw and gets it.
    const holderAt = held.indexOf("holder");
    const rest = tabs.filter((_, i) => i !== holderAt);
    let releaseStream;
    const streamHeld = new Promise((resolve) => (releaseStream = resolve));
    let streamsAsked = 0;
    let askedAt;
    await context.route("**/trpc/updates.onUpdate**", async (route) => {
      streamsAsked++;
      askedAt ??= performance.now();
      await streamHeld;
      await route.continue();
    });
    const seqBefore = await busSeq(app.base);
    const closedAt = performance.now();
    await tabs[holderAt].close();
    await untilStreams(app.base, 0);
    const during = uniqueName("handover");
    await cloud.createVolume(during);
    // The poller has published it before any tab has a stream again.
    const deadline = Date.now() + 10_000;
    while ((await busSeq(app.base)) === seqBefore) {
      if (Date.now() > deadline) throw new Error("the out-of-band volume was never published");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(await openStreams(app.base), 0, "a tab had a stream while the hand-over was held back");
    assert.ok(streamsAsked >= 1, "no remaining tab asked for the stream");
    const takeoverMs = Math.round(askedAt - closedAt);
    console.log(`take-over: a remaining tab asked for the stream ${takeoverMs} ms after the holder closed`);
    assert.ok(takeoverMs < 1000, `the stream was taken over ${takeoverMs} ms after the holder closed`);
    releaseStream();
    await untilStreams(app.base, 1);
    await context.unroute("**/trpc/updates.onUpdate**");
    for (const tab of rest) await row(tab, during).waitFor({ state: "visible", timeout: 5000 });
    // This includes waiting for the poller to publish the volume while the stream was held.
    console.log(`hand-over: every remaining tab showed the volume ${Math.round(performance.now() - closedAt)} ms after the holder closed`);
    const after = await roles(rest);
    assert.equal(after.filter((r) => r === "holder").length, 1, `roles after the hand-over: ${after}`);
    for (const tab of rest) await tab.locator(`${BADGE}[data-state="live"]`).waitFor({ timeout: 5000 });
    assert.equal(await openStreams(app.base), 1);
  });
});
