/**
 * A fake browser for the tabs that share one update stream: Web Locks (exclusive, queued
 * in request order, `steal`, `signal`) and `BroadcastChannel` (delivered asynchronously to
 * every other channel of the same name, in order), with each tab's visibility and Page
 * Lifecycle under the test's control.
 */
import type { ChannelLike, LockManagerLike, TabEnvironment } from "../updates/tabs";

interface Waiter {
  tab: FakeTab;
  grant: () => void;
}

class FakeLocks {
  private holder: { tab: FakeTab; release: () => void; reject: (e: Error) => void } | null = null;
  private queue: Waiter[] = [];

  /** The tab holding the lock. */
  get holderTab(): FakeTab | null {
    return this.holder?.tab ?? null;
  }

  request(
    tab: FakeTab,
    options: { signal?: AbortSignal; steal?: boolean },
    callback: (lock: unknown) => Promise<void>,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let waiter: Waiter | null = null;
      const run = () => {
        let done = false;
        const finish = (ok: boolean, error?: Error) => {
          if (done) return;
          done = true;
          if (this.holder?.tab === tab && this.holder.release === release) this.holder = null;
          if (ok) resolve(undefined);
          else reject(error);
          this.next();
        };
        const release = () => finish(true);
        this.holder = { tab, release, reject: (e) => finish(false, e) };
        callback({ name: "lock" }).then(release, release);
      };
      if (options.steal) {
        const previous = this.holder;
        this.holder = null;
        previous?.reject(new DOMException("stolen", "AbortError"));
        run();
        return;
      }
      waiter = { tab, grant: run };
      options.signal?.addEventListener("abort", () => {
        if (!waiter || !this.queue.includes(waiter)) return;
        this.queue = this.queue.filter((w) => w !== waiter);
        reject(new DOMException("aborted", "AbortError"));
      });
      this.queue.push(waiter);
      this.next();
    });
  }

  /** A closed tab's lock is released and its queued requests dropped, as the browser does. */
  closeTab(tab: FakeTab): void {
    this.queue = this.queue.filter((w) => w.tab !== tab);
    if (this.holder?.tab === tab) this.holder.release();
  }

  private next(): void {
    if (this.holder) return;
    const waiter = this.queue.shift();
    waiter?.grant();
  }
}

class FakeChannel implements ChannelLike {
  onmessage: ((event: MessageEvent) => void) | null = null;
  closed = false;
  constructor(
    private readonly bus: FakeBrowser,
    readonly tab: FakeTab,
  ) {}
  postMessage(message: unknown): void {
    if (this.closed) throw new DOMException("closed", "InvalidStateError");
    this.bus.deliver(this, structuredClone(message), this.tab.origin);
  }
  close(): void {
    this.closed = true;
  }
}

export class FakeTab {
  visible = false;
  private lifecycle = new Set<(phase: "freeze" | "resume") => void>();
  constructor(
    readonly browser: FakeBrowser,
    readonly name: string,
    readonly origin = "http://localhost:3000",
  ) {}

  env(): TabEnvironment {
    const locks: LockManagerLike = {
      request: (_name, options, callback) => this.browser.locks.request(this, options, callback),
    };
    return {
      locks,
      openChannel: () => this.browser.open(this),
      origin: this.origin,
      visible: () => this.visible,
      onLifecycle: (listener) => {
        this.lifecycle.add(listener);
        return () => this.lifecycle.delete(listener);
      },
      readTerm: () => this.browser.term,
      writeTerm: (term) => {
        this.browser.term = term;
      },
    };
  }

  /** Page Lifecycle: the browser freezes or resumes the page. */
  emit(phase: "freeze" | "resume"): void {
    for (const listener of this.lifecycle) listener(phase);
  }
}

export class FakeBrowser {
  readonly locks = new FakeLocks();
  term = 0;
  private channels: FakeChannel[] = [];
  /** Tabs whose incoming messages are held back (a hung page). */
  readonly hung = new Set<FakeTab>();
  private held: Array<() => void> = [];

  tab(name: string, origin?: string): FakeTab {
    return new FakeTab(this, name, origin);
  }

  open(tab: FakeTab): FakeChannel {
    const channel = new FakeChannel(this, tab);
    this.channels.push(channel);
    return channel;
  }

  /** Posts `data` to every open channel but `from`'s, as a message event from `origin`. */
  deliver(from: FakeChannel | null, data: unknown, origin: string): void {
    for (const channel of this.channels) {
      if (channel === from || channel.closed) continue;
      const send = () => {
        if (!channel.closed) channel.onmessage?.(new MessageEvent("message", { data, origin }));
      };
      setTimeout(() => (this.hung.has(channel.tab) ? this.held.push(send) : send()), 0);
    }
  }

  /** What a page of another origin, or any script, might post on the channel. */
  inject(data: unknown, origin: string): void {
    this.deliver(null, data, origin);
  }

  /** A hung page wakes up: it handles what arrived meanwhile. */
  wake(tab: FakeTab): void {
    this.hung.delete(tab);
    const held = this.held;
    this.held = [];
    for (const send of held) send();
  }

  /** The tab closed: its lock and channels go with it. */
  close(tab: FakeTab): void {
    for (const channel of this.channels) if (channel.tab === tab) channel.closed = true;
    this.locks.closeTab(tab);
  }
}
