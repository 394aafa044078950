/**
 * Reading stream events, and what they do to the query cache by invalidation: a resync
 * invalidates everything; an update makes stale the query paths `UPDATE_QUERY_MAP` lists
 * for its type (by key prefix, so every input of those queries goes stale, and only the
 * active ones refetch) — except the lists with a `changes` companion, which
 * [`ListPatcher`](./patch.ts) patches in place and invalidates only when it cannot.
 * `invalidateType` is the whole-type fallback, for a build without a patcher.
 */
import type { QueryPath, StreamEvent, UpdateType, UpdatesState } from "@stalecast/bindings";
import { UPDATE_QUERY_MAP } from "@stalecast/bindings";
import type { Query, QueryClient, QueryFilters, QueryKey } from "@tanstack/react-query";

/**
 * The query-key prefix of a procedure: `@trpc/tanstack-react-query` keys a query as
 * `[["storage", "volumes", "list"], { input, type }]`, so `[["storage", "volumes", "list"]]`
 * matches every input of that query (the same as `trpc.storage.volumes.list.pathKey()`).
 */
export function pathKey(path: QueryPath | string): QueryKey {
  return [path.split(".")];
}

/** The query paths an update of `type` makes stale; `undefined` for a type this build does not know. */
export function pathsFor(type: UpdateType): readonly QueryPath[] | undefined {
  return (UPDATE_QUERY_MAP as Partial<Record<string, readonly QueryPath[]>>)[type];
}

/** Marks the queries of `type` stale; the active ones refetch (TanStack's default). */
export async function invalidateType(queryClient: QueryClient, type: UpdateType): Promise<void> {
  const paths = pathsFor(type);
  if (!paths) {
    // A newer server announced a type this build does not map: be safe, refetch what is shown.
    await invalidateAll(queryClient);
    return;
  }
  await Promise.all(paths.map((path) => invalidate(queryClient, { queryKey: pathKey(path) })));
}

/**
 * Marks the queries `filters` match stale; the active ones refetch.
 *
 * That includes answers still on their way: TanStack restarts an active query's refetch
 * when it is invalidated, but lets a first load (no data yet) or an inactive query's fetch
 * run on, and what lands then clears the stale mark, though it may have been read before
 * the change that made it stale. Those are cancelled first (back to what they held, and
 * idle), so that the invalidation fetches them afresh, or when they are next shown.
 */
export async function invalidate(queryClient: QueryClient, filters: QueryFilters): Promise<void> {
  // Matched before cancelling: a filter on the fetch status would not match them after.
  const matched = new Set(queryClient.getQueryCache().findAll(filters));
  for (const query of matched) {
    if (query.state.fetchStatus !== "idle" && (query.state.data === undefined || !query.isActive())) {
      void query.cancel({ revert: true });
    }
  }
  await queryClient.invalidateQueries({ predicate: (query) => matched.has(query) });
}

/** Marks every query (that `predicate` accepts) stale: after a resync, nothing in the cache can be trusted. */
export async function invalidateAll(queryClient: QueryClient, predicate?: (query: Query) => boolean): Promise<void> {
  await invalidate(queryClient, predicate ? { predicate } : {});
}

/** The longest id list an update carries (the server sends at most 64). */
const MAX_IDS = 1000;

function isSeq(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/**
 * `value` as a stream event when it is one, else `null`: an update has a string type, a
 * seq, a timestamp, and maybe a list of string ids; a resync has a seq. What a newer
 * server adds is kept; anything malformed is refused, never applied to the cache.
 */
export function parseStreamEvent(value: unknown): StreamEvent | null {
  if (typeof value !== "object" || value === null) return null;
  const event = value as Record<string, unknown>;
  if (!isSeq(event.seq)) return null;
  if (event.kind === "resync") return value as StreamEvent;
  if (event.kind !== "update" || typeof event.type !== "string" || event.type.length > 64) return null;
  if (typeof event.ts !== "number") return null;
  const ids = event.ids;
  if (ids !== undefined && !(Array.isArray(ids) && ids.length <= MAX_IDS && ids.every((id) => typeof id === "string"))) {
    return null;
  }
  return value as StreamEvent;
}

/**
 * The stream event in what the tRPC client hands to `onData`: events that carry an SSE
 * `id` (updates, and resyncs after a gap) arrive in tRPC's tracked envelope `{ id, data }`,
 * the others bare. Anything else is ignored.
 */
export function toStreamEvent(raw: unknown): StreamEvent | null {
  const bare = parseStreamEvent(raw);
  if (bare) return bare;
  if (typeof raw === "object" && raw !== null && "data" in raw) return parseStreamEvent((raw as { data: unknown }).data);
  return null;
}

/**
 * `updates.state` after an update, without asking the server: the bus's seq and the
 * type's last seq and time move forward.
 */
export function withUpdate(state: UpdatesState | undefined, event: StreamEvent): UpdatesState | undefined {
  if (!state || event.kind !== "update") return state;
  const seq = Math.max(state.seq, event.seq);
  const types = state.types.some((t) => t.type === event.type)
    ? state.types.map((t) => (t.type === event.type && t.seq < event.seq ? { ...t, seq: event.seq, ts: event.ts } : t))
    : [...state.types, { type: event.type, seq: event.seq, ts: event.ts }];
  return { ...state, seq, types };
}
