// Types of stalecast.mjs, for the TypeScript judges in tests/node.

export declare const READY_TIMEOUT_MS: number;
export declare const STOP_TIMEOUT_MS: number;

/** The whole environment the binary gets. */
export declare function binaryEnv(rustLog: string): Record<string, string>;

export interface StartOptions {
  /** The binary's `RUST_LOG` (default `info,tower_http=warn`). */
  rustLog?: string;
}

export interface Running<Ready> {
  /** The ready file's JSON. */
  ready: Ready;
  /** Its last log lines. */
  log: string[];
  /** Throws if the process exited since it was ready. */
  assertRunning(): void;
  /** SIGTERM, then SIGKILL after `STOP_TIMEOUT_MS`; rejects unless it exited with status 0. */
  stop(): Promise<void>;
}

export interface ServeReady {
  addr: string;
  simAddr: string | null;
}

export interface Serve extends Running<ServeReady> {
  /** `http://127.0.0.1:<port>` */
  base: string;
  port: number;
  /** The embedded simulator, `null` with `--upstream`. */
  simUrl: string | null;
}

export interface Sim extends Running<{ addr: string }> {
  url: string;
}

export declare function startBinary<Ready = unknown>(bin: string, args: string[], options?: StartOptions): Promise<Running<Ready>>;
export declare function startServe(bin: string, options?: StartOptions & { port?: number; flags?: string[] }): Promise<Serve>;
export declare function startSim(bin: string, options?: StartOptions & { flags?: string[] }): Promise<Sim>;

/** Signs `user` in at `base` (`auth.login`); resolves to the session cookie as `name=value`. */
export declare function signIn(base: string, user: string, password: string): Promise<string>;
