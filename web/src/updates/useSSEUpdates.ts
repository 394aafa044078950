/**
 * `useSSEUpdates()`: the app's one subscription to `updates.onUpdate`, called once (by
 * `<UpdatesProvider>`). Each update keeps the queries its type maps to in
 * `UPDATE_QUERY_MAP` current: the lists that have a `changes` companion are patched from
 * it ([`ListPatcher`](./patch.ts): one small answer instead of the whole list), the rest
 * are invalidated; a resync invalidates everything. It reports the connection state
 * (`connecting` until the first `connected` event, then `live`, `reconnecting` whenever
 * the stream is down again), the last `seq`, and a short log of recent events.
 *
 * The tabs of one browser share one stream ([`SharedStream`](./tabs.ts)): only the tab
 * holding it subscribes, and passes each event on; the others apply what it passes, and
 * show its connection state. Every tab applies each event once, in seq order: an update
 * whose seq is not past the last one seen is a duplicate (a replay after a hand-over, or
 * a stale holder) and is skipped.
 *
 * Reconnecting is the tRPC client's (the browser's EventSource, resuming with
 * `Last-Event-ID`, so the server replays what was missed or sends a resync). If the
 * subscription fails for good, this hook subscribes again after a pause, resuming from
 * the last `seq` it saw; a tab that takes the stream over resumes the same way.
 */
import { UPDATE_QUERY_MAP, type StreamEvent, type UpdateType } from "@stalecast/bindings";
import { skipToken, useQueryClient } from "@tanstack/react-query";
import { useSubscription } from "@trpc/tanstack-react-query";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { httpStatusOf } from "../lib/errors";
import { setStreamLive } from "../queryClient";
import { useTRPC, useTRPCClient } from "../trpc";
import { invalidateAll, invalidateType, toStreamEvent, withUpdate } from "./events";
import { ListPatcher, changesCaller } from "./patch";
import {
  SharedStream,
  browserTabs,
  type ConnectionState,
  type HolderState,
  type Role,
  type TabEnvironment,
  type TabOptions,
} from "./tabs";

export type { ConnectionState, Role } from "./tabs";

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
  /** Whether this tab holds the browser's stream, hears it from the tab that does, or has its own. */
  role: Role;
  /** The `seq` of the last event received, `null` before the first. */
  lastSeq: number | null;
  /** The most recent events, newest first (not the server's own figures: `serverStats`). */
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
  /**
   * How this tab shares the stream with the browser's other tabs: the browser's own Web
   * Locks and `BroadcastChannel` by default, `null` for a stream of its own.
   */
  tabs?: TabEnvironment | null;
  /** Timing of the hand-over between tabs. */
  tabOptions?: TabOptions;
  /** The seq to resume after (the last one seen before the session ended), if any. */
  resumeFrom?: number | null;
  /** Hears each seq applied, to resume from after signing in again. */
  onSeq?(seq: number): void;
  /**
   * The stream ended because the session did (`UNAUTHORIZED`: signed out, expired): it is
   * not opened again, this is called instead.
   */
  onUnauthorized?(): void;
  /**
   * The stream failed for another reason (it is opened again after `retryDelayMs`): the
   * session may have ended with the server (a restarted one knows none), which only a
   * request can tell.
   */
  onFailed?(): void;
}

/**
 * Every update type, named: a stream that names none gets the cloud's collections only,
 * not the server's own figures (`serverStats`) that the Server page shows.
 */
const STREAM_TYPES = Object.keys(UPDATE_QUERY_MAP) as UpdateType[];

export function useSSEUpdates({
  logSize = 50,
  retryDelayMs = 2000,
  tabs,
  tabOptions,
  resumeFrom: resumeAfter = null,
  onSeq,
  onUnauthorized,
  onFailed,
}: SSEUpdatesOptions = {}): SSEUpdates {
  const trpc = useTRPC();
  const client = useTRPCClient();
  const queryClient = useQueryClient();
  // Decided once per mount: a tab does not change browsers.
  const [environment] = useState(() => (tabs === undefined ? browserTabs() : tabs));
  const [role, setRole] = useState<Role>(environment ? "follower" : "alone");
  const [remote, setRemote] = useState<HolderState>({ state: "connecting", error: null, seq: null });
  const [events, setEvents] = useState<LoggedEvent[]>([]);
  const [lastSeq, setLastSeq] = useState<number | null>(null);
  const [resumeFrom, setResumeFrom] = useState<string | undefined>(resumeAfter === null ? undefined : String(resumeAfter));
  const lastSeqRef = useRef<number | null>(resumeAfter);
  const onSeqRef = useRef(onSeq);
  onSeqRef.current = onSeq;
  const onUnauthorizedRef = useRef(onUnauthorized);
  onUnauthorizedRef.current = onUnauthorized;
  const onFailedRef = useRef(onFailed);
  onFailedRef.current = onFailed;
  const arrivals = useRef(0);
  const everLive = useRef(false);
  const listeners = useRef(new Set<UpdateListener>());
  const roleRef = useRef(role);
  roleRef.current = role;
  const shared = useRef<SharedStream | null>(null);
  /** This tab's own stream state, for the tabs that ask the holder. */
  const own = useRef<HolderState>({ state: "connecting", error: null, seq: null });
  const patcher = useRef<ListPatcher | null>(null);
  const clientRef = useRef(client);
  clientRef.current = client;

  // Patches the lists from their `changes` queries, for the life of the query cache (what
  // it knows of each list is lost with it, so not for each tRPC client). It watches the
  // cache from here on: a list whose fetch started before has an unknown seq, and is
  // refetched on its first update instead (such fetches predate every event anyway).
  useEffect(() => {
    const lists = new ListPatcher(queryClient, changesCaller(() => clientRef.current), () => lastSeqRef.current);
    const stop = lists.start();
    patcher.current = lists;
    return () => {
      stop();
      if (patcher.current === lists) patcher.current = null;
    };
  }, [queryClient]);

  /** Applies one event to this tab's cache, once: what is not past the last seq was seen. */
  const apply = useCallback(
    (event: StreamEvent) => {
      const last = lastSeqRef.current;
      if (last !== null && (event.kind === "update" ? event.seq <= last : event.seq === last)) return false;
      lastSeqRef.current = event.seq;
      onSeqRef.current?.(event.seq);
      own.current = { ...own.current, seq: event.seq };
      setLastSeq(event.seq);
      if (event.kind === "update") {
        // The seq is recorded above first: a list refetch this starts holds this update.
        const lists = patcher.current;
        if (lists) lists.update(event);
        else void invalidateType(queryClient, event.type);
        queryClient.setQueryData(trpc.updates.state.queryKey(), (old) => withUpdate(old, event));
      } else {
        // Missed updates, or a restarted server numbering from scratch: no list's seq holds.
        patcher.current?.reset();
        void invalidateAll(queryClient);
      }
      // The log is the cloud's changes: the server's own figures (every few seconds) would crowd them out.
      if (event.kind !== "update" || event.type !== "serverStats") {
        const n = ++arrivals.current;
        setEvents((previous) => [{ n, receivedAt: Date.now(), event }, ...previous].slice(0, logSize));
      }
      for (const listener of listeners.current) listener(event);
      return true;
    },
    [queryClient, trpc, logSize],
  );

  /** The first time this tab hears the stream is live (its own or the holder's). */
  const wentLive = useCallback(() => {
    if (everLive.current) return false;
    everLive.current = true;
    // Answers that arrived (or are on their way) before the stream listened may predate
    // an update nobody heard.
    void invalidateAll(queryClient, (query) => query.state.status === "success" || query.state.fetchStatus !== "idle");
    return true;
  }, [queryClient]);

  const onData = useCallback(
    (raw: unknown) => {
      // A tab that lost the stream to another one is closing its own: the new holder delivers.
      if (roleRef.current === "follower") return;
      const event = toStreamEvent(raw);
      if (event && apply(event)) shared.current?.publishEvent(event);
    },
    [apply],
  );

  const onStarted = useCallback(() => {
    if (roleRef.current === "follower") return;
    if (wentLive()) return;
    if (lastSeqRef.current === null) {
      // Back after a drop (or taking over from another tab), but with no event id to resume
      // from: the server cannot replay what was missed, so refetch what is shown.
      void invalidateAll(queryClient);
      shared.current?.publishStale();
    }
    // Otherwise the reconnect carried Last-Event-ID: the server replays or sends a resync.
  }, [queryClient, wentLive]);

  // Join the browser's other tabs: one of them holds the stream for all.
  useEffect(() => {
    if (!environment) return;
    const stream = new SharedStream(
      environment,
      {
        role(next) {
          if (next === "holder") {
            // Resume where this tab's view of the stream left off.
            const seq = lastSeqRef.current;
            setResumeFrom(seq === null ? undefined : String(seq));
          } else if (next === "follower") {
            // Until the new holder speaks, its stream is where this tab's left off.
            setRemote(own.current);
          }
          roleRef.current = next;
          setRole(next);
        },
        event(event) {
          apply(event);
        },
        state(state) {
          if (lastSeqRef.current === null && state.seq !== null) {
            // Joined while the holder was live: what it saw up to here is in the answers
            // this tab loads (or refetches once it hears the stream is live).
            lastSeqRef.current = state.seq;
            own.current = { ...own.current, seq: state.seq };
            setLastSeq(state.seq);
          }
          if (state.state === "live") wentLive();
          setRemote(state);
        },
        stale() {
          void invalidateAll(queryClient);
        },
        current: () => own.current,
      },
      tabOptions,
    );
    shared.current = stream;
    stream.start();
    return () => {
      shared.current = null;
      stream.close();
    };
    // The environment and timing are fixed for the life of the provider.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [environment]);

  const input = resumeFrom === undefined ? { types: STREAM_TYPES } : { types: STREAM_TYPES, lastEventId: resumeFrom };
  const subscription = useSubscription(
    trpc.updates.onUpdate.subscriptionOptions(role === "follower" ? skipToken : input, { onData, onStarted }),
  );
  const { status, reset } = subscription;

  // The session ended: the stream stays closed, and whoever signs in opens a new one.
  const unauthorized = status === "error" && httpStatusOf(subscription.error) === 401;
  useEffect(() => {
    if (unauthorized) onUnauthorizedRef.current?.();
  }, [unauthorized]);

  // The stock client gives up on errors it deems final; a dashboard should not.
  useEffect(() => {
    if (status !== "error" || unauthorized) return;
    onFailedRef.current?.();
    const timer = setTimeout(() => {
      const seq = lastSeqRef.current;
      const next = seq === null ? undefined : String(seq);
      if (next !== resumeFrom) setResumeFrom(next);
      else reset();
    }, retryDelayMs);
    return () => clearTimeout(timer);
  }, [status, unauthorized, reset, resumeFrom, retryDelayMs]);

  const ownState: ConnectionState =
    status === "pending" ? "live" : everLive.current || status === "error" ? "reconnecting" : "connecting";
  const ownError = ownState === "live" ? null : (subscription.error?.message ?? null);
  const state = role === "follower" ? remote.state : ownState;
  const error = role === "follower" ? (remote.state === "live" ? null : remote.error) : ownError;

  // Tell the other tabs how this tab's stream is doing, while it holds it.
  useEffect(() => {
    if (role !== "holder") return;
    own.current = { state: ownState, error: ownError, seq: lastSeqRef.current };
    shared.current?.publishState(own.current);
  }, [role, ownState, ownError]);

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

  return useMemo(
    () => ({ state, role, lastSeq, events, error, listen }),
    [state, role, lastSeq, events, error, listen],
  );
}
