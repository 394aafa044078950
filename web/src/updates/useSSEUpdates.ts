/**
 * `useSSEUpdates()`: the app's one subscription to `updates.onUpdate`, called once (by
 * `<UpdatesProvider>`). Each update invalidates the queries its type maps to in
 * `UPDATE_QUERY_MAP`; a resync invalidates everything. It reports the connection state
 * (`connecting` until the first `connected` event, then `live`, `reconnecting` whenever
 * the stream is down again), the last `seq`, and a short log of recent events.
 *
 * Reconnecting is the tRPC client's (the browser's EventSource, resuming with
 * `Last-Event-ID`, so the server replays what was missed or sends a resync). If the
 * subscription fails for good, this hook subscribes again after a pause, resuming from
 * the last `seq` it saw.
 */
import type { StreamEvent } from "@stalecast/bindings";
import { useQueryClient } from "@tanstack/react-query";
import { useSubscription } from "@trpc/tanstack-react-query";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { setStreamLive } from "../queryClient";
import { useTRPC } from "../trpc";
import { invalidateAll, invalidateType, toStreamEvent, withUpdate } from "./events";

export type ConnectionState = "connecting" | "live" | "reconnecting";

export interface LoggedEvent {
  /** Arrival counter: a stable key. */
  n: number;
  /** When it arrived (browser clock, ms since the epoch). */
  receivedAt: number;
  event: StreamEvent;
}

export type UpdateListener = (event: StreamEvent) => void;

export interface SSEUpdates {
  state: ConnectionState;
  /** The `seq` of the last event received, `null` before the first. */
  lastSeq: number | null;
  /** The most recent events, newest first. */
  events: readonly LoggedEvent[];
  /** Why the stream is down, when the client said. */
  error: string | null;
  /** Calls `listener` with every event after the cache was invalidated; returns the unsubscribe. */
  listen(listener: UpdateListener): () => void;
}

export interface SSEUpdatesOptions {
  /** How many events the log keeps. */
  logSize?: number;
  /** Pause before subscribing again after the subscription failed for good. */
  retryDelayMs?: number;
}

export function useSSEUpdates({ logSize = 50, retryDelayMs = 2000 }: SSEUpdatesOptions = {}): SSEUpdates {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [events, setEvents] = useState<LoggedEvent[]>([]);
  const [lastSeq, setLastSeq] = useState<number | null>(null);
  const [resumeFrom, setResumeFrom] = useState<string | undefined>(undefined);
  const lastSeqRef = useRef<number | null>(null);
  const arrivals = useRef(0);
  const everLive = useRef(false);
  const listeners = useRef(new Set<UpdateListener>());

  const onData = useCallback(
    (raw: unknown) => {
      const event = toStreamEvent(raw);
      if (!event) return;
      lastSeqRef.current = event.seq;
      setLastSeq(event.seq);
      if (event.kind === "update") {
        void invalidateType(queryClient, event.type);
        queryClient.setQueryData(trpc.updates.state.queryKey(), (old) => withUpdate(old, event));
      } else {
        void invalidateAll(queryClient);
      }
      const n = ++arrivals.current;
      setEvents((previous) => [{ n, receivedAt: Date.now(), event }, ...previous].slice(0, logSize));
      for (const listener of listeners.current) listener(event);
    },
    [queryClient, trpc, logSize],
  );

  const onStarted = useCallback(() => {
    if (!everLive.current) {
      everLive.current = true;
      // Answers that arrived before the stream listened may predate an update nobody heard.
      void queryClient.invalidateQueries({ predicate: (query) => query.state.status === "success" });
    } else if (lastSeqRef.current === null) {
      // Back after a drop, but with no event id to resume from: the server cannot replay
      // what was missed, so refetch what is shown.
      void invalidateAll(queryClient);
    }
    // Otherwise the reconnect carried Last-Event-ID: the server replays or sends a resync.
  }, [queryClient]);

  const input = resumeFrom === undefined ? {} : { lastEventId: resumeFrom };
  const subscription = useSubscription(trpc.updates.onUpdate.subscriptionOptions(input, { onData, onStarted }));
  const { status, reset } = subscription;

  // The stock client gives up on errors it deems final; a dashboard should not.
  useEffect(() => {
    if (status !== "error") return;
    const timer = setTimeout(() => {
      const seq = lastSeqRef.current;
      const next = seq === null ? undefined : String(seq);
      if (next !== resumeFrom) setResumeFrom(next);
      else reset();
    }, retryDelayMs);
    return () => clearTimeout(timer);
  }, [status, reset, resumeFrom, retryDelayMs]);

  const state: ConnectionState =
    status === "pending" ? "live" : everLive.current || status === "error" ? "reconnecting" : "connecting";

  useEffect(() => {
    setStreamLive(state === "live");
  }, [state]);
  useEffect(() => () => setStreamLive(false), []);

  const listen = useCallback((listener: UpdateListener) => {
    listeners.current.add(listener);
    return () => {
      listeners.current.delete(listener);
    };
  }, []);

  const error = state === "live" ? null : (subscription.error?.message ?? null);
  return useMemo(
    () => ({ state, lastSeq, events, error, listen }),
    [state, lastSeq, events, error, listen],
  );
}
