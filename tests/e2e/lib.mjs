// Test support for the browser end-to-end tests: start the real `stalecast` binary (and,
// when a test needs the cloud to outlive Stalecast, the simulator alone), drive Debian's
// chromium through playwright-core, and change the simulated cloud out of band. Every
// page records what the browser reports as wrong (Content-Security-Policy violations,
// console errors, uncaught errors), and each test fails on any it did not allow.

import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { launchOptions } from "../harness/chromium.mjs";
import { signIn, startServe, startSim } from "../harness/stalecast.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");

/** The binary under test (`make e2e` builds it), the built web app, where output goes. */
export const BIN = process.env.STALECAST_BIN ?? join(root, "target/debug/stalecast");
/** The release build, for the tests whose figures are about speed (`make e2e` builds it too). */
export const RELEASE_BIN = process.env.STALECAST_RELEASE_BIN ?? join(root, "target/release/stalecast");
export const WEB_DIR = process.env.STALECAST_WEB_DIR ?? join(root, "web/dist");
export const OUT_DIR = join(here, "out");

/** How often Stalecast polls the simulator in these tests. */
export const POLL_MS = 500;

/**
 * `stalecast serve` on `port` (0: any), polling every `pollMs` (default `POLL_MS`); without `upstream`, with
 * the embedded simulator. Resolves to `{ base, port, simUrl, log, assertRunning, stop }`;
 * `stop()` rejects unless the server shut down cleanly.
 */
export async function startStalecast({ port = 0, upstream, pollMs = POLL_MS, bin = BIN, extra = [] } = {}) {
  const flags = ["--log-format", "json", "--poll-interval", `${pollMs}ms`, "--web-dir", WEB_DIR, ...extra];
  if (upstream) flags.push("--upstream", upstream);
  const server = await startServe(bin, { port, flags });
  // The simulator's admin, signed in: what the tests do "from another browser" (`mutate`,
  // `api`) and the session pages start with (`openPage`).
  const cookie = await signIn(server.base, "admin", "stalecast");
  sessions.set(server.base, cookie);
  return { ...server, cookie, simUrl: upstream ?? server.simUrl };
}

/** The admin's session cookie of each running Stalecast, by its base URL. */
const sessions = new Map();

/** `fetch` of `base + path` with the admin's session (`init` as for `fetch`). */
export async function api(base, path, init = {}) {
  const cookie = sessions.get(base);
  if (!cookie) throw new Error(`no session for ${base}: start it with startStalecast`);
  return fetch(base + path, { ...init, headers: { ...init.headers, cookie } });
}

/** Gives `context` (a browser profile) the session `cookie` (`name=value`) for `base`. */
export async function addSession(context, base, cookie) {
  const [name, value] = cookie.split("=");
  await context.addCookies([{ name, value, url: base, httpOnly: true, sameSite: "Lax" }]);
}

/**
 * Signs `user` in through the dashboard's sign-in page, as a person does: `page` is on it
 * (at any address); answers once the console shows the user.
 */
export async function signInThroughPage(page, user, password) {
  const form = page.locator('form[aria-label="Sign in"]');
  await form.waitFor({ timeout: 15_000 });
  await form.locator('input[name="user"]').fill(user);
  await form.locator('input[name="password"]').fill(password);
  await form.getByRole("button", { name: "Sign in" }).click();
  await page.locator('[data-testid="signed-in-user"]').filter({ hasText: user }).waitFor({ timeout: 15_000 });
}

/** `stalecast sim` alone on any free port. Resolves to `{ url, assertRunning, stop }`. */
export async function startSimulator() {
  return startSim(BIN, { flags: ["--log-format", "json", "--transition-delay", "1s"] });
}

/** Debian's chromium, with the flags these tests run it with. */
export async function launchBrowser() {
  return chromium.launch(launchOptions);
}

/**
 * What went wrong in each page opened with `newPage` since the last
 * `assertNoBrowserProblems()`: `{ page, problems: string[], allowed: RegExp[] }`.
 */
let watched = [];

/**
 * Runs in every document before its own scripts: reports each Content-Security-Policy
 * violation (a blocked script, style, image, inline handler, fetch or EventSource) to the
 * test through the `__reportCspViolation` binding, and keeps it in `window.__cspViolations`.
 */
function reportCspViolations() {
  window.__cspViolations = [];
  document.addEventListener(
    "securitypolicyviolation",
    (e) => {
      const violation = {
        directive: e.violatedDirective,
        blocked: e.blockedURI,
        source: e.sourceFile ? `${e.sourceFile}:${e.lineNumber}` : "",
        sample: e.sample,
      };
      window.__cspViolations.push(violation);
      window.__reportCspViolation?.(violation);
    },
    true,
  );
}

/**
 * A new page (in its own context) on which every Content-Security-Policy violation,
 * console message of type "error" and uncaught error is recorded; the test's
 * `assertNoBrowserProblems()` fails on any that `allowBrowserProblems` did not allow.
 */
export async function newPage(browser, options = { viewport: { width: 1440, height: 900 } }) {
  return watch(await browser.newPage(options));
}

/**
 * A new tab in `context` (a browser context: one profile, whose tabs share cookies,
 * storage, Web Locks and connections), recorded as `newPage` records its pages.
 */
export async function newTab(context) {
  return watch(await context.newPage());
}

/** Records what goes wrong in `page` (see `newPage`); answers the page. */
async function watch(page) {
  const entry = { page, problems: [], allowed: [] };
  watched.push(entry);
  const where = () => {
    try {
      return new URL(page.url()).pathname;
    } catch {
      return page.url();
    }
  };
  await page.exposeBinding("__reportCspViolation", (_source, v) => {
    const sample = v.sample ? ` "${v.sample}"` : "";
    const source = v.source ? ` from ${v.source}` : "";
    entry.problems.push(`CSP violation on ${where()}: ${v.directive} blocked ${v.blocked || "(inline)"}${sample}${source}`);
  });
  await page.addInitScript(reportCspViolations);
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const { url, lineNumber } = message.location();
    const at = url ? ` (at ${url}${lineNumber ? `:${lineNumber}` : ""})` : "";
    entry.problems.push(`console error on ${where()}: ${message.text()}${at}`);
  });
  page.on("pageerror", (error) => {
    const frame = error.stack?.split("\n").find((line) => line.trim().startsWith("at "));
    entry.problems.push(`uncaught error on ${where()}: ${error.message}${frame ? ` (${frame.trim()})` : ""}`);
  });
  return page;
}

/**
 * Lets `page` report problems that match one of `patterns` (matched against the lines
 * `assertNoBrowserProblems` prints) in the current test: for an error the test provokes.
 * Keep each pattern narrow and say why at the call.
 */
export function allowBrowserProblems(page, ...patterns) {
  const entry = watched.find((e) => e.page === page);
  if (!entry) throw new Error("allowBrowserProblems: that page was not opened with newPage");
  entry.allowed.push(...patterns);
}

/**
 * Fails, listing them, if any page opened since the last call reported a problem that was
 * not allowed; then starts afresh. Call it after every test (`afterEach`).
 */
export async function assertNoBrowserProblems() {
  const entries = watched;
  watched = [];
  await Promise.all(entries.map(({ page }) => flush(page)));
  const problems = entries.flatMap(unallowed);
  if (problems.length > 0) throw new Error(describeProblems(problems));
}

/** A round trip to `page`, if still open: delivers any report still on its way. */
async function flush(page) {
  if (!page.isClosed()) await page.evaluate(() => 0).catch(() => null);
}

/** The problems `entry`'s page reported that no pattern allowed. */
function unallowed({ problems, allowed }) {
  return problems.filter((p) => !allowed.some((pattern) => pattern.test(p)));
}

function describeProblems(problems) {
  return `the browser reported ${problems.length} problem(s):\n  ${problems.join("\n  ")}`;
}

/**
 * Runs `steps`; if they fail, the error also lists what `page` reported that was not
 * allowed: a page that never loads because the CSP blocked its script then fails naming
 * the violation, not only the element it waited for.
 */
export async function withBrowserProblems(page, steps) {
  try {
    return await steps();
  } catch (error) {
    const entry = watched.find((e) => e.page === page);
    await flush(page);
    const problems = entry ? unallowed(entry) : [];
    if (problems.length > 0 && error instanceof Error) {
      const message = error.message;
      error.message += `\n${describeProblems(problems)}`;
      if (typeof error.stack === "string") error.stack = error.stack.replace(message, error.message);
    }
    throw error;
  }
}

/** The tRPC requests (not the update stream) each open page sent, and those not yet answered. */
const requestsOf = new WeakMap();

/**
 * Opens `path` in a `newPage`, signed in as the simulator's admin, and waits until the page's update stream is live, its table
 * loaded and its requests settled (`trpcSettled`). From the start, its tRPC requests are
 * recorded (see `trpcRequests`).
 */
export async function openPage(browser, base, path) {
  const page = await newPage(browser);
  await addSession(page.context(), base, sessions.get(base));
  const requests = { sent: [], pending: new Set() };
  requestsOf.set(page, requests);
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (!url.pathname.startsWith("/trpc/") || url.pathname === "/trpc/updates.onUpdate") return;
    requests.sent.push(decodeURIComponent(url.pathname.slice("/trpc/".length)));
    requests.pending.add(request);
  });
  for (const event of ["requestfinished", "requestfailed"]) page.on(event, (request) => requests.pending.delete(request));
  await withBrowserProblems(page, async () => {
    await page.goto(base + path);
    await page.locator('[data-testid="connection-state"][data-state="live"]').waitFor({ timeout: 15_000 });
    await page.locator("table tbody tr[data-id]").first().waitFor({ timeout: 15_000 });
    await trpcSettled(page);
  });
  return page;
}

/**
 * The procedures of each tRPC request `page` sent, in order: `"storage.volumes.list"`,
 * or `"a,b"` for a batch of two.
 */
export function trpcRequests(page) {
  return requestsOf.get(page).sent;
}

/** How long a page must send nothing to count as settled. */
const QUIET_MS = 300;

/**
 * Waits until every tRPC request `page` sent was answered and it sent none for
 * `QUIET_MS`: what one event made it fetch has all been sent by then (it is sent at
 * once, in one batch). Fails after 10 s.
 */
export async function trpcSettled(page) {
  const { sent, pending } = requestsOf.get(page);
  const deadline = Date.now() + 10_000;
  let count = -1;
  let quietSince = Date.now();
  for (;;) {
    if (sent.length !== count || pending.size > 0) {
      count = sent.length;
      quietSince = Date.now();
    } else if (Date.now() - quietSince >= QUIET_MS) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`the page's requests did not settle in 10 s: sent ${JSON.stringify(sent)}, ${pending.size} unanswered`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Milliseconds until `locator` is visible, failing after `limitMs`. */
export async function timeUntilVisible(locator, limitMs) {
  const started = performance.now();
  await locator.waitFor({ state: "visible", timeout: limitMs });
  return Math.round(performance.now() - started);
}

/**
 * The simulator's OpenStack API, used to change the cloud behind Stalecast's back, as an
 * OpenStack client does: with a token scoped to the project it acts in (Cinder creates in
 * the token's project, under a URL that names it).
 */
export class Cloud {
  constructor(url) {
    this.url = url;
    this.tokens = new Map();
  }

  /** A token of the admin's, scoped to `projectId`. */
  async login(projectId = "prj-web") {
    const response = await fetch(`${this.url}/v3/auth/tokens`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        auth: {
          identity: { methods: ["password"], password: { user: { name: "admin", domain: { id: "default" }, password: "stalecast" } } },
          scope: { project: { id: projectId } },
        },
      }),
    });
    if (response.status !== 201) throw new Error(`simulator login: ${response.status}`);
    const token = response.headers.get("x-subject-token");
    this.tokens.set(projectId, token);
    return token;
  }

  async createVolume(name, projectId = "prj-web") {
    const token = this.tokens.get(projectId) ?? (await this.login(projectId));
    const response = await fetch(`${this.url}/volume/v3/${encodeURIComponent(projectId)}/volumes`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-auth-token": token },
      body: JSON.stringify({ volume: { name, size: 1 } }),
    });
    if (!response.ok) throw new Error(`simulator create volume: ${response.status} ${await response.text()}`);
    return (await response.json()).volume.id;
  }

  /** Snapshots `volumeId` (a volume of `projectId`) as another client would; answers the snapshot's id. */
  async createSnapshot(name, volumeId, projectId = "prj-web") {
    const token = this.tokens.get(projectId) ?? (await this.login(projectId));
    const response = await fetch(`${this.url}/volume/v3/${encodeURIComponent(projectId)}/snapshots`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-auth-token": token },
      body: JSON.stringify({ snapshot: { volume_id: volumeId, name } }),
    });
    if (!response.ok) throw new Error(`simulator create snapshot: ${response.status} ${await response.text()}`);
    return (await response.json()).snapshot.id;
  }

  async setFaults(faults) {
    const response = await fetch(`${this.url}/_sim/faults`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(faults),
    });
    if (!response.ok) throw new Error(`simulator faults: ${response.status}`);
  }
}

/** A tRPC mutation against Stalecast, as another user's browser would send it. */
export async function mutate(base, path, input) {
  const response = await api(base, `/trpc/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(input),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`${path}: ${response.status} ${JSON.stringify(body)}`);
  return body.result.data;
}

/** A unique, readable resource name. */
export function uniqueName(prefix) {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
}

export function outPath(file) {
  mkdirSync(OUT_DIR, { recursive: true });
  return join(OUT_DIR, file);
}
