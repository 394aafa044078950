// The stock tRPC client, typed by the generated AppRouter, wired the way an app wires it:
// subscriptions over httpSubscriptionLink (EventSource), calls batched by httpBatchLink
// unless a call asks for `context: { skipBatch: true }`, which goes over httpLink. Every
// request carries the session cookie, as a browser's do (the stream's included).

import { createTRPCClient, httpBatchLink, httpLink, httpSubscriptionLink, splitLink } from "@trpc/client";
import type { AppRouter, OnUpdateInput, StreamEvent } from "@stalecast/bindings";
import { EventSource } from "eventsource";

export interface Request {
  method: string;
  url: string;
}

/** `fetch` with `cookie` (`name=value`) on every request. */
export function fetchWithCookie(cookie: string) {
  return (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const headers = new Headers(init?.headers);
    headers.set("cookie", cookie);
    return fetch(input, { ...init, headers });
  };
}

export function makeClient(base: string, options: { streamBase?: string; cookie: string }) {
  const requests: Request[] = [];
  const signedIn = fetchWithCookie(options.cookie);
  const recordingFetch = (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    requests.push({ method: init?.method ?? "GET", url: String(input) });
    return signedIn(input, init);
  };
  const client = createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === "subscription",
        true: httpSubscriptionLink({
          url: `${options.streamBase ?? base}/trpc`,
          EventSource,
          eventSourceOptions: { fetch: signedIn },
        }),
        false: splitLink({
          condition: (op) => op.context.skipBatch === true,
          true: httpLink({ url: `${base}/trpc`, fetch: recordingFetch }),
          false: httpBatchLink({ url: `${base}/trpc`, fetch: recordingFetch }),
        }),
      }),
    ],
  });
  return { client, requests };
}

export type Client = ReturnType<typeof makeClient>["client"];

/** What the subscription hands to `onData`: a tracked event. */
export interface Tracked {
  id: string;
  data: StreamEvent;
}

/** A queue of values that tests await one by one. */
export class Queue<T> {
  readonly all: T[] = [];
  private read = 0;
  private wake: (() => void) | null = null;

  push(value: T): void {
    this.all.push(value);
    this.wake?.();
  }

  /** The next value that satisfies `accept`, skipping the others. */
  async next(accept: (value: T) => boolean = () => true, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.read < this.all.length) {
        const value = this.all[this.read++]!;
        if (accept(value)) return value;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching value within ${timeoutMs} ms; got ${JSON.stringify(this.all)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }
}

/** Subscribes to `updates.onUpdate` and collects what arrives. */
export function subscribe(client: Client, input?: OnUpdateInput) {
  const events = new Queue<Tracked>();
  const states: string[] = [];
  const errors: unknown[] = [];
  let onStarted!: () => void;
  const started = new Promise<void>((resolve) => (onStarted = resolve));
  const subscription = client.updates.onUpdate.subscribe(input, {
    onStarted: () => onStarted(),
    onData: (event) => events.push(event),
    onError: (error) => errors.push(error),
    onConnectionStateChange: (state) => states.push(state.state),
  });
  return { events, states, errors, started, unsubscribe: () => subscription.unsubscribe() };
}
