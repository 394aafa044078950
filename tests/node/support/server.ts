// Starts the real `stalecast serve` binary with its embedded simulator on free ports, as
// a user would (through the shared harness: a minimal environment, the ready file), and
// stops it (SIGTERM, then a clean exit is expected).

import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { startServe } from "../../harness/stalecast.mjs";

/** The binary: `STALECAST_BIN`, else the workspace's debug build. */
export const BINARY =
  process.env.STALECAST_BIN ?? fileURLToPath(new URL("../../../target/debug/stalecast", import.meta.url));

export interface Server {
  /** `http://127.0.0.1:<port>` */
  base: string;
  port: number;
  /** Its last log lines, one JSON object per line. */
  log: string[];
  stop(): Promise<void>;
}

/** Starts the server with extra `serve` flags, e.g. `["--ring-size", "2"]`. */
export async function startServer(flags: string[] = []): Promise<Server> {
  if (!existsSync(BINARY)) {
    throw new Error(`${BINARY} does not exist: build it with \`cargo build -p stalecast\` or set STALECAST_BIN`);
  }
  const server = await startServe(BINARY, {
    flags: ["--log-format", "json", "--poll-interval", "200ms", ...flags],
    rustLog: "info",
  });
  return { base: server.base, port: server.port, log: server.log, stop: server.stop };
}
