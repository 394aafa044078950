// Starts the real `stalecast serve` binary with its embedded simulator on free ports, as
// a user would, and stops it (SIGTERM, then a clean exit is expected).

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

/** The binary: `STALECAST_BIN`, else the workspace's debug build. */
export const BINARY =
  process.env.STALECAST_BIN ?? fileURLToPath(new URL("../../../target/debug/stalecast", import.meta.url));

export interface Server {
  /** `http://127.0.0.1:<port>` */
  base: string;
  /** Where the embedded simulator listens. */
  sim: string;
  port: number;
  /** Everything the server logged, one JSON object per line. */
  log: string[];
  stop(): Promise<void>;
}

/** Starts the server with extra `serve` flags, e.g. `["--ring-size", "2"]`. */
export async function startServer(flags: string[] = []): Promise<Server> {
  if (!existsSync(BINARY)) {
    throw new Error(`${BINARY} does not exist: build it with \`cargo build -p stalecast\` or set STALECAST_BIN`);
  }
  const args = ["serve", "--port", "0", "--sim-port", "0", "--log-format", "json", "--poll-interval", "200ms", ...flags];
  const child = spawn(BINARY, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: "info" } });
  const log: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));

  let timer: NodeJS.Timeout | undefined;
  const listening = new Promise<{ addr: string; sim: string }>((resolve, reject) => {
    let sim = "";
    const onLine = (line: string) => {
      log.push(line);
      let entry: { fields?: Record<string, unknown> };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      const fields = entry.fields ?? {};
      if (fields.message === "embedded OpenStack simulator listening") sim = String(fields.sim_addr);
      if (fields.message === "stalecast listening") resolve({ addr: String(fields.addr), sim });
    };
    for (const stream of [child.stdout, child.stderr]) {
      if (stream) createInterface({ input: stream }).on("line", onLine);
    }
    void exited.then((code) => reject(new Error(`stalecast exited (${code}) before listening:\n${log.join("\n")}`)));
    timer = setTimeout(() => reject(new Error(`no address logged within 10 s:\n${log.join("\n")}`)), 10_000);
  });

  let addr: { addr: string; sim: string };
  try {
    addr = await listening;
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const port = Number(addr.addr.split(":").pop());
  return {
    base: `http://${addr.addr}`,
    sim: `http://${addr.sim}`,
    port,
    log,
    stop: () => stop(child, exited),
  };
}

async function stop(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  const code = await exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`stalecast did not shut down cleanly (exit ${code})`);
}
