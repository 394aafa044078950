/**
 * One update stream per browser, shared by its tabs.
 *
 * Browsers open at most six HTTP/1.1 connections per host, and an event stream holds one
 * for as long as its tab is open: with one stream per tab the seventh tab cannot even load
 * its page. So the tabs of one origin elect a *holder*, the only tab with a stream; it
 * passes every event and its connection state to the others over a `BroadcastChannel`.
 *
 * - **Election: the Web Locks API.** Every tab asks for one exclusive lock; the browser
 *   grants it to one tab and queues the others, and releases it the moment that tab
 *   closes, navigates away or crashes, when the next one in the queue gets it and opens
 *   the stream, resuming after the last `seq` it saw (so the server replays what the
 *   hand-over missed).
 * - **Frozen holders.** A holder about to be frozen (the Page Lifecycle `freeze` event)
 *   lets go of the lock first. One that hangs without warning is noticed by the tab the
 *   user is looking at: a visible follower asks for the holder's state every `probeMs`,
 *   and steals the lock when no answer came for `takeoverMs`. Only visible tabs probe, so
 *   background tabs (whose timers browsers throttle) never steal on a late timer.
 * - **Terms.** Each grant of the lock gets a term higher than every earlier one (a counter
 *   in `localStorage`, written only by the tab holding the lock); followers heed only the
 *   holder with the highest term they heard, so a stale holder that wakes up after
 *   losing the lock is ignored, and stops its stream when it hears the newer holder.
 * - **Why not a `SharedWorker`:** it would spare the hand-over, but Chrome on Android has
 *   none, a worker cannot use this app's tRPC client and React Query cache directly, and
 *   the hand-over costs one reconnect that the server already answers without a gap.
 *
 * Where the browser lacks Web Locks or `BroadcastChannel` (they need a secure context:
 * HTTPS, or `http://localhost`), every tab is `alone` and opens its own stream.
 *
 * Messages between tabs are checked before use: anything malformed, from another origin,
 * or from a tab that no longer holds the stream is ignored.
 */
import type { StreamEvent } from "@stalecast/bindings";
import { parseStreamEvent } from "./events";

export type ConnectionState = "connecting" | "live" | "reconnecting";

/** `holder` opens the stream for every tab, a `follower` hears it from the holder, `alone` has its own. */
export type Role = "holder" | "follower" | "alone";

/** What the holder tells the other tabs about its stream. */
export interface HolderState {
  state: ConnectionState;
  error: string | null;
  /** The last `seq` the holder saw: where a tab that just joined resumes from. */
  seq: number | null;
}

/** What a tab hears from the holder, and what the holder must be able to answer. */
export interface TabPeers {
  /** This tab's role changed. */
  role(role: Role): void;
  /** An event from the holder's stream. */
  event(event: StreamEvent): void;
  /** The holder's stream state. */
  state(state: HolderState): void;
  /** The holder could not resume where the stream left off: everything may be stale. */
  stale(): void;
  /** This tab's own stream state, while it holds the stream. */
  current(): HolderState;
}

/** The part of `navigator.locks` used here. */
export interface LockManagerLike {
  request(
    name: string,
    options: { signal?: AbortSignal; steal?: boolean },
    callback: (lock: unknown) => Promise<void>,
  ): Promise<unknown>;
}

/** The part of `BroadcastChannel` used here. */
export interface ChannelLike {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent) => void) | null;
  close(): void;
}

/** What the browser offers one tab; tests pass fakes. */
export interface TabEnvironment {
  locks: LockManagerLike;
  openChannel(name: string): ChannelLike;
  /** This page's origin (`location.origin`): messages from any other are ignored. */
  origin: string;
  /** Is the user looking at this tab? */
  visible(): boolean;
  /** Calls `listener` when the page is frozen or resumed (Page Lifecycle); answers the unsubscribe. */
  onLifecycle(listener: (phase: "freeze" | "resume") => void): () => void;
  /** The last term handed out, and storing a new one (`localStorage`); `null` when unavailable. */
  readTerm(): number | null;
  writeTerm(term: number): void;
}

export interface TabOptions {
  /** How often a visible follower asks the holder for its state. */
  probeMs?: number;
  /** How long a visible follower waits for an answer before it takes the stream over. */
  takeoverMs?: number;
}

/** The lock and channel names; the version lets two builds of the app ignore each other. */
const LOCK = "stalecast.updates.stream";
const CHANNEL = "stalecast.updates.v1";
const TERM_KEY = "stalecast.updates.term";
const APP = "stalecast";

type Message =
  | { kind: "hello" }
  | { kind: "state"; state: HolderState }
  | { kind: "event"; event: StreamEvent }
  | { kind: "stale" };

interface Envelope {
  app: typeof APP;
  /** The sending tab. */
  tab: string;
  /** The sender's term as holder; 0 for a follower's `hello`. */
  term: number;
  msg: Message;
}

/** The browser's own Web Locks and `BroadcastChannel`, or `null` where either is missing. */
export function browserTabs(): TabEnvironment | null {
  if (typeof window === "undefined" || typeof BroadcastChannel === "undefined") return null;
  const locks = (navigator as Navigator & { locks?: LockManagerLike }).locks;
  if (!locks) return null;
  return {
    locks,
    openChannel: (name) => new BroadcastChannel(name),
    origin: window.location.origin,
    visible: () => document.visibilityState === "visible",
    onLifecycle(listener) {
      const freeze = () => listener("freeze");
      const resume = () => listener("resume");
      // A page entering the back/forward cache is as gone as a frozen one.
      const hide = (e: PageTransitionEvent) => e.persisted && listener("freeze");
      const show = (e: PageTransitionEvent) => e.persisted && listener("resume");
      document.addEventListener("freeze", freeze);
      document.addEventListener("resume", resume);
      window.addEventListener("pagehide", hide);
      window.addEventListener("pageshow", show);
      return () => {
        document.removeEventListener("freeze", freeze);
        document.removeEventListener("resume", resume);
        window.removeEventListener("pagehide", hide);
        window.removeEventListener("pageshow", show);
      };
    },
    readTerm() {
      try {
        const value = Number(window.localStorage.getItem(TERM_KEY));
        return Number.isSafeInteger(value) && value >= 0 ? value : 0;
      } catch {
        return null;
      }
    },
    writeTerm(term) {
      try {
        window.localStorage.setItem(TERM_KEY, String(term));
      } catch {
        // Storage refused (privacy settings): terms fall back to the clock.
      }
    },
  };
}

function isConnectionState(value: unknown): value is ConnectionState {
  return value === "connecting" || value === "live" || value === "reconnecting";
}

function parseHolderState(value: unknown): HolderState | null {
  if (typeof value !== "object" || value === null) return null;
  const { state, error, seq } = value as Record<string, unknown>;
  if (!isConnectionState(state)) return null;
  if (error !== null && (typeof error !== "string" || error.length > 1000)) return null;
  if (seq !== null && !(typeof seq === "number" && Number.isSafeInteger(seq) && seq >= 0)) return null;
  return { state, error, seq };
}

/** A message from another tab, or `null` when it is not one this build sent. */
export function parseEnvelope(data: unknown): Envelope | null {
  if (typeof data !== "object" || data === null) return null;
  const { app, tab, term, msg } = data as Record<string, unknown>;
  if (app !== APP || typeof tab !== "string" || tab.length === 0 || tab.length > 64) return null;
  if (typeof term !== "number" || !Number.isSafeInteger(term) || term < 0) return null;
  if (typeof msg !== "object" || msg === null) return null;
  const kind = (msg as { kind?: unknown }).kind;
  switch (kind) {
    case "hello":
    case "stale":
      return { app, tab, term, msg: { kind } };
    case "state": {
      const state = parseHolderState((msg as { state?: unknown }).state);
      return state ? { app, tab, term, msg: { kind, state } } : null;
    }
    case "event": {
      const event = parseStreamEvent((msg as { event?: unknown }).event);
      return event ? { app, tab, term, msg: { kind, event } } : null;
    }
    default:
      return null;
  }
}

function randomTabId(): string {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * One tab's part in sharing the stream. `start()` joins (asks for the lock), `close()`
 * leaves; while this tab holds the stream, it passes what its stream says on with
 * `publish*`, and everything it hears from the holder reaches `peers`.
 */
export class SharedStream {
  readonly tab = randomTabId();
  private role: Role = "follower";
  private channel: ChannelLike | null = null;
  /** This tab's term while it holds the stream. */
  private term = 0;
  /** The highest holder term heard, and which tab holds it. */
  private holderTerm = 0;
  private holderTab: string | null = null;
  /** Each lock request's number: the outcome of an older one is ignored. */
  private generation = 0;
  private releaseLock: (() => void) | null = null;
  private abortQueued: (() => void) | null = null;
  /** When this tab sent a `hello` still unanswered by the holder. */
  private probeSentAt: number | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private unlisten: (() => void) | null = null;
  private frozen = false;
  private closed = false;
  private readonly probeMs: number;
  private readonly takeoverMs: number;

  constructor(
    private readonly env: TabEnvironment,
    private readonly peers: TabPeers,
    { probeMs = 250, takeoverMs = 1000 }: TabOptions = {},
  ) {
    this.probeMs = probeMs;
    this.takeoverMs = takeoverMs;
  }

  start(): void {
    const channel = this.env.openChannel(CHANNEL);
    channel.onmessage = (e) => this.receive(e);
    this.channel = channel;
    this.unlisten = this.env.onLifecycle((phase) => (phase === "freeze" ? this.freeze() : this.resume()));
    this.timer = setInterval(() => this.probe(), this.probeMs);
    this.send(0, { kind: "hello" });
    this.request(false);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.letGo();
    if (this.timer !== null) clearInterval(this.timer);
    this.unlisten?.();
    this.channel?.close();
    this.channel = null;
  }

  /** An event this tab's stream delivered: for every other tab. */
  publishEvent(event: StreamEvent): void {
    if (this.role === "holder") this.send(this.term, { kind: "event", event });
  }

  /** This tab's stream state changed. */
  publishState(state: HolderState): void {
    if (this.role === "holder") this.send(this.term, { kind: "state", state });
  }

  /** This tab's stream started without a resume point. */
  publishStale(): void {
    if (this.role === "holder") this.send(this.term, { kind: "stale" });
  }

  private send(term: number, msg: Message): void {
    const envelope: Envelope = { app: APP, tab: this.tab, term, msg };
    try {
      this.channel?.postMessage(envelope);
    } catch {
      // A closed channel (the page is going away): nothing to tell.
    }
  }

  private setRole(role: Role): void {
    if (role === this.role) return;
    this.role = role;
    this.peers.role(role);
  }

  /** Asks for the lock: queued behind the holder, or taking it from a holder that hangs. */
  private request(steal: boolean): void {
    const generation = ++this.generation;
    const abort = new AbortController();
    this.abortQueued = () => abort.abort();
    const granted = () =>
      new Promise<void>((release) => {
        if (generation !== this.generation || this.closed || this.frozen) {
          release();
          return;
        }
        this.releaseLock = release;
        this.hold();
      });
    const options = steal ? { steal: true } : { signal: abort.signal };
    this.env.locks.request(LOCK, options, granted).then(
      () => this.lockEnded(generation),
      () => this.lockEnded(generation),
    );
  }

  /** This tab was granted the lock: it holds the stream now. */
  private hold(): void {
    const stored = this.env.readTerm();
    const floor = stored === null ? Date.now() : stored;
    this.term = Math.max(floor, this.holderTerm) + 1;
    this.env.writeTerm(this.term);
    this.holderTerm = this.term;
    this.holderTab = this.tab;
    this.probeSentAt = null;
    this.setRole("holder");
    this.send(this.term, { kind: "state", state: this.peers.current() });
  }

  /** The lock request ended: released by this tab, stolen by another, or aborted. */
  private lockEnded(generation: number): void {
    if (generation !== this.generation) return;
    this.releaseLock = null;
    if (this.role === "holder") this.setRole("follower");
    if (!this.closed && !this.frozen) this.request(false);
  }

  /** Stops holding or waiting for the lock. */
  private letGo(): void {
    this.generation++;
    const release = this.releaseLock;
    this.releaseLock = null;
    release?.();
    this.abortQueued?.();
    this.abortQueued = null;
    this.setRole("follower");
  }

  private freeze(): void {
    if (this.frozen || this.closed) return;
    this.frozen = true;
    this.letGo();
  }

  private resume(): void {
    if (!this.frozen || this.closed) return;
    this.frozen = false;
    this.send(0, { kind: "hello" });
    this.request(false);
  }

  /** A visible follower checks that the holder still answers, and takes over when it does not. */
  private probe(): void {
    if (this.role !== "follower" || this.frozen || this.closed || !this.env.visible()) {
      this.probeSentAt = null;
      return;
    }
    const now = Date.now();
    if (this.probeSentAt === null) {
      this.probeSentAt = now;
      this.send(0, { kind: "hello" });
    } else if (now - this.probeSentAt >= this.takeoverMs) {
      this.probeSentAt = null;
      // The holder is frozen or hung: take the lock from it.
      const queued = this.abortQueued;
      this.request(true);
      queued?.();
    }
  }

  private receive(e: MessageEvent): void {
    if (this.closed) return;
    if (e.origin && e.origin !== this.env.origin) return;
    const envelope = parseEnvelope(e.data);
    if (!envelope || envelope.tab === this.tab) return;
    const { tab, term, msg } = envelope;
    if (msg.kind === "hello") {
      if (this.role === "holder") this.send(this.term, { kind: "state", state: this.peers.current() });
      return;
    }
    // From a holder: heed only the newest.
    if (term < this.holderTerm || (term === this.holderTerm && tab !== this.holderTab)) return;
    if (this.role === "holder") {
      // A newer holder took the lock while this tab was not looking: stop, and queue again.
      this.letGo();
      if (!this.frozen) this.request(false);
    }
    this.holderTerm = term;
    this.holderTab = tab;
    this.probeSentAt = null;
    if (this.role !== "follower") return;
    switch (msg.kind) {
      case "state":
        this.peers.state(msg.state);
        break;
      case "event":
        this.peers.event(msg.event);
        break;
      case "stale":
        this.peers.stale();
        break;
    }
  }
}
