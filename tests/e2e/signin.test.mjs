// Sign-in in a real browser (Debian's chromium) against the real `stalecast` binary: two
// users in two browser profiles. Alice (member of web-team) creates a volume and sees it
// in her second tab; bob (reader of data-team) never sees it, on his page or in the bytes
// of his stream, and his "New volume" button is disabled with the reason; signing out
// brings every tab of alice's back to the sign-in page.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import {
  allowBrowserProblems,
  assertNoBrowserProblems,
  launchBrowser,
  newTab,
  signInThroughPage,
  startStalecast,
  uniqueName,
  withBrowserProblems,
} from "./lib.mjs";

const LIVE = '[data-testid="connection-state"][data-state="live"]';

/** Records every event the page's EventSources receive, in `window.__streamData`. */
function recordStreams() {
  const Native = window.EventSource;
  window.__streamData = [];
  window.EventSource = class extends Native {
    constructor(...args) {
      super(...args);
      for (const type of ["connected", "message", "serialized-error"]) {
        this.addEventListener(type, (event) => window.__streamData.push(`${type}: ${event.data}`));
      }
    }
  };
}

/** A fresh page with no session answers auth.me 401 (chromium logs it). */
const NOT_SIGNED_IN = /Failed to load resource: the server responded with a status of 401 \(Unauthorized\) \(at http:\/\/[^/\s]+\/trpc\/auth\.me/;

async function signedInTab(context, base, user, password) {
  const tab = await newTab(context);
  allowBrowserProblems(tab, NOT_SIGNED_IN);
  await tab.addInitScript(recordStreams);
  await withBrowserProblems(tab, async () => {
    await tab.goto(`${base}/volumes`);
    await signInThroughPage(tab, user, password);
    await tab.locator(LIVE).waitFor({ timeout: 15_000 });
  });
  return tab;
}

describe("signing in, two users in two browsers", () => {
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

  test("the sign-in page lists the simulator's demo users and says why a sign-in failed", async () => {
    const context = await browser.newContext();
    const page = await newTab(context);
    allowBrowserProblems(page, NOT_SIGNED_IN, /status of 401 \(Unauthorized\) \(at http:\/\/[^/\s]+\/trpc\/auth\.login/);
    await page.goto(`${app.base}/servers`);
    const demo = page.locator('section[aria-label="Demo users"]');
    await demo.waitFor({ timeout: 15_000 });
    const listed = await demo.innerText();
    for (const who of ["admin", "alice", "bob"]) assert.match(listed, new RegExp(who), listed);
    assert.match(listed, /reader of data-team/, listed);
    const form = page.locator('form[aria-label="Sign in"]');
    await form.locator('input[name="user"]').fill("alice");
    await form.locator('input[name="password"]').fill("wrong");
    await form.getByRole("button", { name: "Sign in" }).click();
    await page.locator('[data-testid="signin-error"]').waitFor({ timeout: 5000 });
    // The demo user's button fills the form.
    await demo.getByRole("button", { name: "alice" }).click();
    await form.getByRole("button", { name: "Sign in" }).click();
    await page.locator('[data-testid="signed-in-user"]').filter({ hasText: "alice" }).waitFor({ timeout: 10_000 });
    assert.equal(new URL(page.url()).pathname, "/servers", "signed in where the user was");
    await context.close();
  });

  test("alice's volume reaches her second tab and never bob, who may not create; sign-out returns every tab to sign-in", async () => {
    const alices = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const bobs = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    try {
      const a1 = await signedInTab(alices, app.base, "alice", "alice");
      const a2 = await newTab(alices);
      await a2.goto(`${app.base}/volumes`);
      await a2.locator(LIVE).waitFor({ timeout: 15_000 });
      const bob = await signedInTab(bobs, app.base, "bob", "bob");

      // The project picker lists only each user's projects.
      const picked = async (page) => (await page.locator('[data-testid="project-filter"] option').allInnerTexts()).slice(1);
      assert.deepEqual(await picked(a1), ["web-team"]);
      assert.deepEqual(await picked(bob), ["data-team"]);

      // Bob, a reader, may not create: the button is disabled, and says why.
      const bobsButton = bob.locator('[data-testid="new-volume"]');
      assert.equal(await bobsButton.isDisabled(), true);
      const reason = await bob.locator('[data-testid="readonly-reason"]').innerText();
      assert.match(reason, /reader in data-team/, reason);
      // His rows' actions too.
      const bobsDelete = bob.locator("table tbody tr[data-id]").first().getByRole("button", { name: "Delete" });
      assert.equal(await bobsDelete.isDisabled(), true);

      // Alice creates a volume in web-team in her first tab.
      const name = uniqueName("e2e-alice");
      await a1.locator('[data-testid="new-volume"]').click();
      const form = a1.locator('form[aria-label="New volume"]');
      await form.locator('input[name="name"]').fill(name);
      await form.getByRole("button", { name: "Create volume" }).click();
      const rowA2 = a2.locator(`tr[data-name="${name}"]`);
      await rowA2.waitFor({ timeout: 5000 });
      const id = await rowA2.getAttribute("data-id");
      // Past the poller's next look at it (creating → available), which announces it again.
      await rowA2.locator('[data-status="available"]').waitFor({ timeout: 10_000 });
      await a1.waitForTimeout(1000);

      assert.equal(await bob.locator(`tr[data-name="${name}"]`).count(), 0, "bob's page shows it");
      const bobHeard = await bob.evaluate(() => window.__streamData);
      assert.ok(bobHeard.some((d) => d.startsWith("connected")), `bob's stream was recorded: ${JSON.stringify(bobHeard)}`);
      assert.ok(!bobHeard.some((d) => d.includes(id)), `bob's stream carried ${id}: ${JSON.stringify(bobHeard)}`);
      const aliceHeard = [
        ...(await a1.evaluate(() => window.__streamData)),
        ...(await a2.evaluate(() => window.__streamData ?? [])),
      ];
      assert.ok(aliceHeard.some((d) => d.includes(id)), "alice's stream carried her volume");

      // Alice signs out in one tab: both of hers show the sign-in page.
      await a1.getByRole("button", { name: "Sign out" }).click();
      for (const tab of [a1, a2]) {
        await tab.locator('form[aria-label="Sign in"]').waitFor({ timeout: 3000 });
        const notice = await tab.locator('[data-testid="signin-notice"]').innerText();
        assert.match(notice, /signed out/i, notice);
      }
      // Bob stays signed in.
      assert.equal(await bob.locator('[data-testid="signed-in-user"]').count(), 1);
    } finally {
      await alices.close();
      await bobs.close();
    }
  });
});
