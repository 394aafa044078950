/**
 * `useAutoRefetch(type)`: for a component that cares about one update type.
 *
 * The queries in `UPDATE_QUERY_MAP[type]` are already kept current by `useSSEUpdates`
 * (lists patched from their `changes` queries, the rest invalidated); this hook adds what
 * a component may want on top: invalidating its own extra query
 * keys (queries the map does not know), the last update of that type, and the ids that
 * changed recently (to highlight them). A resync counts as an update of every type.
 */
import type { Update, UpdateType } from "@stalecast/bindings";
import { useQueryClient, type QueryKey } from "@tanstack/react-query";
import { useEffect, useRef, useState } from "react";
import { useUpdates } from "./context";

export interface AutoRefetchOptions {
  /** More query keys (prefixes) to invalidate on each update of the type. */
  queryKeys?: readonly QueryKey[];
  /** How long an id counts as recently changed. */
  highlightMs?: number;
}

export interface AutoRefetch {
  /** The last update of this type received since the component mounted. */
  last: Update | undefined;
  /** Ids named by updates of this type within the last `highlightMs`. */
  changed: ReadonlySet<string>;
}

export function useAutoRefetch(type: UpdateType, { queryKeys = [], highlightMs = 2500 }: AutoRefetchOptions = {}): AutoRefetch {
  const { listen } = useUpdates();
  const queryClient = useQueryClient();
  const [last, setLast] = useState<Update | undefined>(undefined);
  const [changed, setChanged] = useState<ReadonlySet<string>>(new Set());
  const keys = useRef(queryKeys);
  keys.current = queryKeys;

  useEffect(() => {
    const timers = new Set<ReturnType<typeof setTimeout>>();
    const unlisten = listen((event) => {
      if (event.kind === "update" && event.type !== type) return;
      for (const queryKey of keys.current) void queryClient.invalidateQueries({ queryKey });
      if (event.kind !== "update") return;
      const { kind: _kind, ...update } = event;
      setLast(update);
      const ids = event.ids ?? [];
      if (ids.length === 0) return;
      setChanged((previous) => new Set([...previous, ...ids]));
      const timer = setTimeout(() => {
        timers.delete(timer);
        setChanged((previous) => new Set([...previous].filter((id) => !ids.includes(id))));
      }, highlightMs);
      timers.add(timer);
    });
    return () => {
      unlisten();
      for (const timer of timers) clearTimeout(timer);
    };
  }, [listen, queryClient, type, highlightMs]);

  return { last, changed };
}
