// Starts the real `stalecast serve` binary with its embedded simulator on free ports, as
// a user would (through the shared harness: a minimal environment, the ready file), and
// stops it (SIGTERM, then a clean exit is expected).

import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { signIn, startServe } from "../../harness/stalecast.mjs";

/** The binary: `STALECAST_BIN`, else the workspace's debug build. */
export const BINARY =
  process.env.STALECAST_BIN ?? fileURLToPath(new URL("../../../target/debug/stalecast", import.meta.url));

export interface Server {
  /** `http://127.0.0.1:<port>` */
  base: string;
  port: number;
  /** The session cookie (`name=value`) of the simulator's admin, signed in at start. */
  cookie: string;
  /** Signs `user` in; resolves to their session cookie. */
  signIn(user: string, password: string): Promise<string>;
  /** Its last log lines, one JSON object per line. */
  log: string[];
  stop(): Promise<void>;
}

/** Starts the server with extra `serve` flags, e.g. `["--ring-size", "2"]`, and signs its admin in. */
export async function startServer(flags: string[] = []): Promise<Server> {
  if (!existsSync(BINARY)) {
    throw new Error(`${BINARY} does not exist: build it with \`cargo build -p stalecast\` or set STALECAST_BIN`);
  }
  const server = await startServe(BINARY, {
    flags: ["--log-format", "json", "--poll-interval", "200ms", ...flags],
    rustLog: "info",
  });
  const cookie = await signIn(server.base, "admin", "stalecast");
  return {
    base: server.base,
    port: server.port,
    cookie,
    signIn: (user, password) => signIn(server.base, user, password),
    log: server.log,
    stop: server.stop,
  };
}
