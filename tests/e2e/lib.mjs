// Test support for the browser end-to-end tests: start the real `stalecast` binary (and,
// when a test needs the cloud to outlive Stalecast, the simulator alone), drive Debian's
// chromium through playwright-core, and change the simulated cloud out of band.

import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");

/** The binary under test (`make e2e` builds it), the built web app, where output goes. */
export const BIN = process.env.STALECAST_BIN ?? join(root, "target/debug/stalecast");
export const WEB_DIR = process.env.STALECAST_WEB_DIR ?? join(root, "web/dist");
export const OUT_DIR = join(here, "out");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** How often Stalecast polls the simulator in these tests. */
export const POLL_MS = 500;

const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * Starts `stalecast <args>` with JSON logs and resolves once the log line `message` shows,
 * with that line's fields. Rejects if the process exits first or nothing shows in 20 s.
 */
function startProcess(args, message) {
  const child = spawn(BIN, ["--log-format", "json", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info,tower_http=warn" },
  });
  running.add(child);
  const log = [];
  const exited = new Promise((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  const ready = new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${message}" in 20 s:\n${log.join("\n")}`)), 20_000);
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on("line", (line) => {
        log.push(line);
        if (log.length > 400) log.shift();
        try {
          const entry = JSON.parse(line);
          if (entry.fields?.message === message) {
            clearTimeout(timer);
            resolveReady(entry.fields);
          }
        } catch {
          // not JSON: a panic message, kept in the log
        }
      });
    }
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`stalecast ${args[0]} exited (${code ?? signal}) before "${message}":\n${log.join("\n")}`));
    });
  });
  return {
    child,
    log,
    ready,
    exited,
    /** SIGTERM (a graceful shutdown), then SIGKILL if it takes more than 5 s. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * `stalecast serve` on `port` (0: any), polling every `POLL_MS`; without `upstream`, with
 * the embedded simulator. Resolves to `{ base, port, simUrl, stop }`.
 */
export async function startStalecast({ port = 0, upstream, extra = [] } = {}) {
  const args = ["serve", "--port", String(port), "--poll-interval", `${POLL_MS}ms`, "--web-dir", WEB_DIR, ...extra];
  if (upstream) args.push("--upstream", upstream);
  const process_ = startProcess(args, "stalecast listening");
  const server = await process_.ready;
  return {
    base: `http://${server.addr}`,
    port: Number(server.addr.split(":").pop()),
    simUrl: upstream ?? `http://${fieldsOf(process_.log, "embedded OpenStack simulator listening").sim_addr}`,
    log: process_.log,
    stop: process_.stop,
  };
}

/** The fields of the first log line with `message` (logged before the server's ready line). */
function fieldsOf(log, message) {
  for (const line of log) {
    try {
      const entry = JSON.parse(line);
      if (entry.fields?.message === message) return entry.fields;
    } catch {
      // not JSON
    }
  }
  throw new Error(`no "${message}" in the log:\n${log.join("\n")}`);
}

/** `stalecast sim` alone on any free port. Resolves to `{ url, stop }`. */
export async function startSimulator() {
  const process_ = startProcess(["sim", "--port", "0", "--transition-delay", "1s"], "OpenStack simulator listening");
  const fields = await process_.ready;
  return { url: `http://${fields.addr}`, stop: process_.stop };
}

/** Debian's chromium, with the flags these tests run it with. */
export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
}

/** Opens `path` and waits until the page's update stream is live and its table loaded. */
export async function openPage(browser, base, path) {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.on("pageerror", (error) => console.error(`page error on ${path}:`, error));
  await page.goto(base + path);
  await page.locator('[data-testid="connection-state"][data-state="live"]').waitFor({ timeout: 15_000 });
  await page.locator("table tbody tr[data-id]").first().waitFor({ timeout: 15_000 });
  return page;
}

/** Milliseconds until `locator` is visible, failing after `limitMs`. */
export async function timeUntilVisible(locator, limitMs) {
  const started = performance.now();
  await locator.waitFor({ state: "visible", timeout: limitMs });
  return Math.round(performance.now() - started);
}

/** The simulator's OpenStack API, used to change the cloud behind Stalecast's back. */
export class Cloud {
  constructor(url) {
    this.url = url;
    this.token = null;
  }

  async login() {
    const response = await fetch(`${this.url}/v3/auth/tokens`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        auth: { identity: { methods: ["password"], password: { user: { name: "admin", password: "stalecast" } } } },
      }),
    });
    if (response.status !== 201) throw new Error(`simulator login: ${response.status}`);
    this.token = response.headers.get("x-subject-token");
  }

  async createVolume(name, projectId = "prj-web") {
    if (!this.token) await this.login();
    const response = await fetch(`${this.url}/volume/v3/volumes`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-auth-token": this.token },
      body: JSON.stringify({ volume: { name, size: 1, project_id: projectId } }),
    });
    if (!response.ok) throw new Error(`simulator create volume: ${response.status} ${await response.text()}`);
    return (await response.json()).volume.id;
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
  const response = await fetch(`${base}/trpc/${path}`, {
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
