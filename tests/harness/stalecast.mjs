// Starts the real `stalecast` binary (`serve` or `sim`) for the Node judges (tests/node)
// and the browser tests (tests/e2e), the same way for both:
//
// - hermetic: the process gets an explicit, minimal environment (PATH, RUST_LOG,
//   RUST_BACKTRACE), never the caller's, so no STALECAST_* variable or log level of the
//   shell that ran the tests changes what is tested;
// - one readiness signal: `--ready-file` in a fresh temporary directory, polled until
//   the binary writes it (it writes the file whole, then renames it into place);
// - its exit is watched: exiting before it is ready, or at any time other than when
//   asked to stop, or without a clean exit when asked, is an error carrying its log.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** How long a process may take to write its ready file. */
export const READY_TIMEOUT_MS = 30_000;
/** How long a process may take to shut down after SIGTERM before it is killed. */
export const STOP_TIMEOUT_MS = 10_000;
/** How many of its last log lines are kept for error messages. */
const LOG_LINES = 500;

const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** The whole environment the binary gets. */
export function binaryEnv(rustLog) {
  return { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", RUST_LOG: rustLog, RUST_BACKTRACE: "1" };
}

/**
 * `stalecast serve` on `port` (0: any free port) with extra `flags`; without
 * `--upstream`, with the embedded simulator on a free port. Adds `base`, `port` and
 * `simUrl` (`null` with `--upstream`) to what `startBinary` answers.
 */
export async function startServe(bin, { port = 0, flags = [], rustLog } = {}) {
  const server = await startBinary(bin, ["serve", "--port", String(port), ...flags], { rustLog });
  const { addr, simAddr } = server.ready;
  return {
    ...server,
    base: `http://${addr}`,
    port: Number(addr.split(":").pop()),
    simUrl: simAddr ? `http://${simAddr}` : null,
  };
}

/**
 * Signs `user` in at `base` (`auth.login`, as the dashboard does) and resolves to the
 * session cookie as `name=value`, for a `Cookie` header or a browser context. Throws
 * with the answer when the sign-in fails.
 */
export async function signIn(base, user, password) {
  const response = await fetch(`${base}/trpc/auth.login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user, password }),
  });
  const body = await response.text();
  const cookie = response.headers.getSetCookie().map((c) => c.split(";")[0]).find((c) => c.includes("stalecast_session="));
  if (response.status !== 200 || !cookie) throw new Error(`sign-in of ${user} failed: ${response.status} ${body}`);
  return cookie;
}

/** `stalecast sim` alone on a free port, with extra `flags`; adds its `url`. */
export async function startSim(bin, { flags = [], rustLog } = {}) {
  const sim = await startBinary(bin, ["sim", "--port", "0", ...flags], { rustLog });
  return { ...sim, url: `http://${sim.ready.addr}` };
}

/**
 * Starts `bin <args> --ready-file <tmp>/ready.json` and resolves once the ready file is
 * there, to `{ ready, log, stop, assertRunning }` (`ready`: the file's JSON).
 */
export async function startBinary(bin, args, { rustLog = "info,tower_http=warn" } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "stalecast-test-"));
  const readyFile = join(dir, "ready.json");
  const child = spawn(bin, [...args, "--ready-file", readyFile], {
    cwd: dir,
    env: binaryEnv(rustLog),
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const name = `stalecast ${args.find((a) => a === "serve" || a === "sim") ?? args[0]}`;
  const log = [];
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => {
      log.push(line);
      if (log.length > LOG_LINES) log.shift();
    });
  }
  const describe = (what) => new Error(`${name} ${what}; its log:\n${log.join("\n")}`);
  let stopping = false;
  let exit = null;
  const exited = new Promise((resolve) => {
    const done = (code, signal) => {
      if (exit) return;
      exit = { code, signal };
      running.delete(child);
      rmSync(dir, { recursive: true, force: true });
      resolve(exit);
    };
    child.once("exit", done);
    // A binary that cannot be started at all (missing, not executable).
    child.once("error", (error) => {
      log.push(String(error));
      done(null, null);
    });
  });
  let ready;
  try {
    ready = await waitForFile(readyFile, exited, READY_TIMEOUT_MS);
  } catch (error) {
    child.kill("SIGKILL");
    await exited;
    throw describe(error.message);
  }

  return {
    ready,
    log,
    /** Throws if the process exited since it was ready (a crash, a fatal error). */
    assertRunning() {
      if (exit) throw describe(`exited with ${status(exit)} while the tests ran`);
    },
    /** SIGTERM, then SIGKILL after `STOP_TIMEOUT_MS`; throws unless it exited cleanly (status 0). */
    async stop() {
      if (exit && !stopping) throw describe(`exited with ${status(exit)} before it was stopped`);
      stopping = true;
      if (!exit) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      const result = await exited;
      clearTimeout(timer);
      if (result.code !== 0) throw describe(`did not shut down cleanly (${status(result)})`);
    },
  };
}

function status(exit) {
  if (exit.signal) return `signal ${exit.signal}`;
  return exit.code === null ? "no status (it could not be started)" : `status ${exit.code}`;
}

/** Polls for `path` until it holds JSON; fails when `exited` settles first or after `timeoutMs`. */
async function waitForFile(path, exited, timeoutMs) {
  let exit = null;
  void exited.then((e) => {
    exit = e;
  });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let text = null;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      if (error.code !== "ENOENT") throw error;
    }
    if (text !== null) return JSON.parse(text);
    if (exit) throw new Error(`exited with ${status(exit)} before it was ready`);
    if (Date.now() > deadline) throw new Error(`wrote no ready file within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
