/**
 * A stand-in for the Stalecast server inside the tRPC client: a terminating link that
 * answers queries from a table (counting each request per path) and hands every
 * subscription to the test, which then plays the stream's events by hand. An answer may
 * be a promise, so that a test decides when (and in which order) requests are answered.
 */
import type { AppRouter } from "@stalecast/bindings";
import { QueryClientProvider, type QueryClient } from "@tanstack/react-query";
import { TRPCClientError, createTRPCClient, type TRPCLink } from "@trpc/client";
import { observable, type Observer } from "@trpc/server/observable";
import type { ReactNode } from "react";
import { TRPCProvider } from "../trpc";
import { UpdatesProvider } from "../updates/context";
import type { SSEUpdatesOptions } from "../updates/useSSEUpdates";

export interface FakeSubscription {
  input: unknown;
  closed: boolean;
  /** The link's observer: what `httpSubscriptionLink` would call. */
  observer: Observer<any, TRPCClientError<AppRouter>>;
}

export class FakeServer {
  /** Requests per procedure path, in order. */
  readonly requests: string[] = [];
  readonly subscriptions: FakeSubscription[] = [];
  constructor(private readonly answers: Record<string, (input: unknown) => unknown>) {}

  count(path: string): number {
    return this.requests.filter((p) => p === path).length;
  }

  get current(): FakeSubscription {
    const open = this.subscriptions.filter((s) => !s.closed);
    const last = open[open.length - 1];
    if (!last) throw new Error("no open subscription");
    return last;
  }

  /** The stream's `connected` event. */
  connected(): void {
    const { observer } = this.current;
    observer.next({ result: { type: "started" } });
    observer.next({ result: { type: "state", state: "pending", error: null } });
  }

  /** The EventSource lost its connection and is retrying. */
  dropped(message = "connection lost"): void {
    this.current.observer.next({
      result: { type: "state", state: "connecting", error: new TRPCClientError(message) },
    });
  }

  /** A data event, as the link delivers it: `{ id, data }` when the SSE event had an id. */
  send(event: unknown, id?: string): void {
    this.current.observer.next({ result: id === undefined ? { data: event } : { id, data: { id, data: event } } });
  }

  /** The session ended: the stream's `serialized-error` with tRPC's UNAUTHORIZED. */
  unauthorized(): void {
    this.current.observer.error(
      TRPCClientError.from({ error: { code: -32001, message: "the session ended", data: { code: "UNAUTHORIZED", httpStatus: 401 } } }),
    );
  }

  /** The subscription failed for good (the stock client stops here). */
  fail(message = "stream refused"): void {
    this.current.observer.error(new TRPCClientError(message));
  }

  link: TRPCLink<AppRouter> = () => ({ op }) =>
    observable((observer) => {
      if (op.type === "subscription") {
        const subscription: FakeSubscription = { input: op.input, closed: false, observer };
        this.subscriptions.push(subscription);
        observer.next({ result: { type: "state", state: "connecting", error: null } });
        return () => {
          subscription.closed = true;
        };
      }
      this.requests.push(op.path);
      const answer = this.answers[op.path];
      if (!answer) {
        observer.error(TRPCClientError.from({ error: { code: -32004, message: `no ${op.path}`, data: { code: "NOT_FOUND", httpStatus: 404 } } }));
        return () => {};
      }
      const respond = (data: unknown) => {
        observer.next({ result: { type: "data", data } });
        observer.complete();
      };
      const result = answer(op.input);
      if (result instanceof Promise) {
        result.then(respond, (error: unknown) =>
          observer.error(error instanceof TRPCClientError ? error : TRPCClientError.from(error as Error)),
        );
      } else {
        respond(result);
      }
      return () => {};
    });

  client() {
    return createTRPCClient<AppRouter>({ links: [this.link] });
  }
}

export function Providers({
  server,
  queryClient,
  options,
  children,
}: {
  server: FakeServer;
  queryClient: QueryClient;
  options?: SSEUpdatesOptions;
  children: ReactNode;
}) {
  return (
    <QueryClientProvider client={queryClient}>
      <TRPCProvider trpcClient={server.client()} queryClient={queryClient}>
        <UpdatesProvider options={options}>{children}</UpdatesProvider>
      </TRPCProvider>
    </QueryClientProvider>
  );
}
