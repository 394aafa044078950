/**
 * Patching cached lists from the `changes` queries instead of refetching them.
 *
 * On an update of type T, every cached query of a list path of T that has a `changes`
 * companion (`CHANGES_QUERY_MAP`) is brought up to date by asking that companion what
 * changed since the seq the cached copy is current to, and applying the answer with
 * `setQueryData`: a volume update costs each tab a small `changes` answer instead of the
 * whole volume list. The other paths of T (the `get` queries) are invalidated as before.
 *
 * Where a list stands is tracked here, per query (a `Map` keyed by `queryHash`: the
 * patcher owns it and drops an entry when the cache removes its query; a query's `meta`
 * belongs to whoever declares the query, and is shared by every input of it):
 * - when the list's fetch STARTS, it records the stream's last seq (the server stores a
 *   change before it publishes its update, so an answer fetched after hearing seq s
 *   contains s); the fetch's success makes that the list's seq. A fetch that fails keeps
 *   the seq the data had. A list fetched before any event was heard has no known seq;
 * - each applied `changes` answer moves it to the answer's `seq`.
 *
 * Per list, one `changes` request at a time: updates that arrive while one is in flight
 * only raise the seq the list must reach, and the next request (since the seq the list
 * reached) covers them all. A list that is being fetched is not patched: when the fetch
 * lands, it is patched from the fetch's seq if updates arrived meanwhile. (Invalidating
 * it instead would cancel and restart the fetch on every update, so a burst of updates
 * could keep a large list from ever arriving.)
 *
 * It falls back to invalidating the list (which refetches it when it is shown) when
 * patching cannot be trusted: an update without ids, a `resync` answer, any error or
 * malformed answer, an unknown seq, data that is not a list of records with ids, an
 * input it does not understand. An inactive list is only marked stale: it is not on
 * screen, so it refetches when shown again rather than costing a request now.
 */
import type { AppRouter, ChangesInput, Update } from "@stalecast/bindings";
import { CHANGES_QUERY_MAP } from "@stalecast/bindings";
import type { Query, QueryCacheNotifyEvent, QueryClient } from "@tanstack/react-query";
import type { TRPCClient } from "@trpc/client";
import { invalidate, invalidateAll, pathKey, pathsFor } from "./events";

/** A list path with a `changes` companion. */
export type ListPath = keyof typeof CHANGES_QUERY_MAP;
/** A `changes` query path. */
export type ChangesPath = (typeof CHANGES_QUERY_MAP)[ListPath];

/** Asks a `changes` query; the answer is checked by the caller, so it is `unknown` here. */
export type ChangesCaller = (path: ChangesPath, input: ChangesInput) => Promise<unknown>;

/**
 * The `changes` calls through the tRPC client (the current one, read at each call), not
 * through the query cache: each answer is applied once and is worth nothing afterwards.
 * One entry per companion, so a new collection in the bindings is a compile error here
 * until it is wired.
 */
export function changesCaller(client: () => TRPCClient<AppRouter>): ChangesCaller {
  const calls: Record<ChangesPath, (input: ChangesInput) => Promise<unknown>> = {
    "projects.changes": (input) => client().projects.changes.query(input),
    "compute.servers.changes": (input) => client().compute.servers.changes.query(input),
    "storage.volumes.changes": (input) => client().storage.volumes.changes.query(input),
    "images.changes": (input) => client().images.changes.query(input),
    "networks.changes": (input) => client().networks.changes.query(input),
    "storage.snapshots.changes": (input) => client().storage.snapshots.changes.query(input),
    "networks.subnets.changes": (input) => client().networks.subnets.changes.query(input),
    "compute.flavors.changes": (input) => client().compute.flavors.changes.query(input),
  };
  return (path, input) => calls[path](input);
}

function isListPath(path: string): path is ListPath {
  return Object.hasOwn(CHANGES_QUERY_MAP, path);
}

interface WithId {
  id: string;
}

/** A checked `changes` answer. */
export type ChangesAnswer =
  | { kind: "changes"; seq: number; upserts: WithId[]; deletes: string[] }
  | { kind: "resync"; seq: number };

function isSeq(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function hasId(value: unknown): value is WithId {
  return typeof value === "object" && value !== null && typeof (value as { id?: unknown }).id === "string";
}

/** `value` as a `changes` answer when it is one, else `null` (never applied). */
export function parseChanges(value: unknown): ChangesAnswer | null {
  if (typeof value !== "object" || value === null) return null;
  const answer = value as Record<string, unknown>;
  if (!isSeq(answer.seq)) return null;
  if (answer.kind === "resync") return { kind: "resync", seq: answer.seq };
  if (answer.kind !== "changes") return null;
  const { upserts, deletes } = answer;
  if (!Array.isArray(upserts) || !upserts.every(hasId)) return null;
  if (!Array.isArray(deletes) || !deletes.every((id) => typeof id === "string")) return null;
  return { kind: "changes", seq: answer.seq, upserts, deletes };
}

/**
 * `list` after a `changes` answer: `deletes` removed, then each upsert replaces the
 * record with its id in place, or is appended. `null` when an item has no id (not a
 * list this can patch).
 */
export function applyChanges<T>(list: readonly T[], upserts: readonly T[], deletes: readonly string[]): T[] | null {
  if (!list.every(hasId)) return null;
  const gone = new Set(deletes);
  const next = gone.size === 0 ? list.slice() : list.filter((record) => !gone.has((record as WithId).id));
  const at = new Map<string, number>();
  next.forEach((record, i) => at.set((record as WithId).id, i));
  for (const record of upserts) {
    const id = (record as WithId).id;
    const i = at.get(id);
    if (i === undefined) {
      at.set(id, next.length);
      next.push(record);
    } else {
      next[i] = record;
    }
  }
  return next;
}

/** The `projectId` of a list query's input; `null` for an input a `changes` call cannot mirror. */
function projectOf(query: Query): { projectId?: string } | null {
  const args = query.queryKey[1] as { input?: unknown; type?: unknown } | undefined;
  if (args === undefined) return {};
  if (typeof args !== "object" || args === null || (args.type !== undefined && args.type !== "query")) return null;
  const input = args.input;
  if (input === undefined || input === null) return {};
  if (typeof input !== "object") return null;
  const { projectId, ...rest } = input as { projectId?: unknown };
  if (Object.keys(rest).length > 0) return null;
  if (projectId === undefined) return {};
  return typeof projectId === "string" ? { projectId } : null;
}

/** Where one cached list stands. */
interface ListState {
  path: ListPath;
  /** The seq the cached data is current to; `null`: unknown. */
  seq: number | null;
  /** The highest update seq of its type heard: the list should be current to at least this. */
  wanted: number;
  /** A fetch is in flight (seen starting), with the stream's seq when it started. */
  fetching: boolean;
  fetchSeq: number | null;
  /** Bumped by each fetch that lands (and by `reset`): a `changes` answer asked before is dropped. */
  generation: number;
  /** Whether the patch loop runs for this list; `chain` is its last run. */
  running: boolean;
  chain: Promise<void>;
}

export class ListPatcher {
  private readonly lists = new Map<string, ListState>();

  constructor(
    private readonly queryClient: QueryClient,
    private readonly callChanges: ChangesCaller,
    /** The seq of the last stream event this tab heard, `null` before the first. */
    private readonly streamSeq: () => number | null,
  ) {}

  /** Starts watching the query cache for list fetches; returns the stop. */
  start(): () => void {
    return this.queryClient.getQueryCache().subscribe((event) => this.observe(event));
  }

  /**
   * Applies an update: its type's lists are patched (or invalidated, see the module
   * doc), its other query paths invalidated. The invalidations (and the refetches they
   * start) are issued before it returns; `settled()` waits for the patches.
   */
  update(event: Update): void {
    const paths = pathsFor(event.type);
    if (!paths) {
      // A newer server announced a type this build does not map: refetch what is shown.
      void invalidateAll(this.queryClient);
      return;
    }
    for (const path of paths) {
      if (!isListPath(path)) {
        void invalidate(this.queryClient, { queryKey: pathKey(path) });
        continue;
      }
      for (const query of this.queryClient.getQueryCache().findAll({ queryKey: pathKey(path) })) {
        if (event.ids === undefined) {
          // No ids: the whole collection may have changed in ways the log cannot tell.
          this.invalidate(query);
          continue;
        }
        const list = this.entry(query, path);
        list.wanted = Math.max(list.wanted, event.seq);
        this.kick(query, list);
      }
    }
  }

  /**
   * After a stream resync (missed updates, or a restarted server whose seqs start
   * over): no seq held so far can be trusted, and everything is being refetched.
   */
  reset(): void {
    for (const list of this.lists.values()) {
      list.seq = null;
      list.wanted = 0;
      // A fetch in flight was asked before the resync: what it holds is not known.
      list.fetchSeq = null;
      list.generation += 1;
    }
  }

  /** Resolves when no patch is running (for tests, and for callers that want to wait). */
  async settled(): Promise<void> {
    for (;;) {
      const running = [...this.lists.values()].filter((list) => list.running);
      if (running.length === 0) return;
      await Promise.all(running.map((list) => list.chain));
    }
  }

  /** The seq a cached list is known to be current to (`null`: unknown or not tracked). */
  seqOf(queryHash: string): number | null {
    return this.lists.get(queryHash)?.seq ?? null;
  }

  private entry(query: Query, path: ListPath): ListState {
    let list = this.lists.get(query.queryHash);
    if (!list) {
      // First seen mid-fetch (before this patcher watched the cache): its start is unknown.
      const fetching = query.state.fetchStatus !== "idle";
      list = { path, seq: null, wanted: 0, fetching, fetchSeq: null, generation: 0, running: false, chain: Promise.resolve() };
      this.lists.set(query.queryHash, list);
    }
    return list;
  }

  private observe(event: QueryCacheNotifyEvent): void {
    const query = event.query;
    const path = (query.queryKey[0] as unknown[] | undefined)?.join?.(".");
    if (typeof path !== "string" || !isListPath(path)) return;
    if (event.type === "removed") {
      this.lists.delete(query.queryHash);
      return;
    }
    if (event.type !== "updated") return;
    const list = this.entry(query, path);
    const action = event.action;
    if (action.type === "fetch") {
      list.fetching = true;
      list.fetchSeq = this.streamSeq();
    } else if (action.type === "success" && !action.manual) {
      list.seq = list.fetching ? list.fetchSeq : null;
      list.fetching = false;
      list.generation += 1;
      // Updates heard while it was in flight may not be in it.
      this.kick(query, list);
    } else if (action.type === "error") {
      // The data is what it was, so is its seq; TanStack marked it stale, and the query
      // shows its error. No patch here: that could loop against a server that is down.
      list.fetching = false;
    } else if (list.fetching && query.state.fetchStatus === "idle") {
      // Cancelled, and reverted to what it had.
      list.fetching = false;
      this.kick(query, list);
    }
  }

  /**
   * Not awaited: the refetch it starts is under way when it returns (and `observe` sees
   * it land); awaiting it would leave the patch loop "running" meanwhile, deaf to kicks.
   */
  private invalidate(query: Query): void {
    void invalidate(this.queryClient, { queryKey: query.queryKey, exact: true });
  }

  /**
   * Runs the patch loop for `list` unless it is running: the loop decides again after
   * each answer, and stops only synchronously after deciding there is nothing to wait
   * for, so no kick is lost.
   */
  private kick(query: Query, list: ListState): void {
    if (list.running) return;
    list.running = true;
    list.chain = this.patch(query, list);
  }

  /** What the list needs now. */
  private decide(query: Query, list: ListState): "done" | "invalidate" | "patch" {
    if (this.queryClient.getQueryCache().get(query.queryHash) !== query) return "done";
    if (list.seq !== null && list.seq >= list.wanted) return "done";
    // Being fetched: when it lands, `observe` kicks again from the fetch's seq.
    if (query.state.fetchStatus !== "idle") return "done";
    if (list.wanted === 0) return "done";
    if (!query.isActive()) return "invalidate";
    if (list.seq === null || !Array.isArray(query.state.data) || projectOf(query) === null) return "invalidate";
    return "patch";
  }

  /**
   * The patch loop. Its only `await` is the `changes` call: deciding there is nothing
   * to do, and clearing `running`, happen in the same task as the kick or the answer
   * (an `await` there would leave `running` set for a moment, and drop the kick of an
   * update delivered right behind this one).
   */
  private async patch(query: Query, list: ListState): Promise<void> {
    try {
      for (;;) {
        const next = this.decide(query, list);
        if (next === "done") return;
        if (next === "invalidate") {
          this.invalidate(query);
          return;
        }
        const since = list.seq as number;
        const wanted = list.wanted;
        const generation = list.generation;
        let answer: ChangesAnswer | null;
        try {
          answer = parseChanges(await this.callChanges(CHANGES_QUERY_MAP[list.path], { since, ...projectOf(query) }));
        } catch {
          // Network or server error: the refetch shows it if it persists.
          answer = null;
        }
        // A fetch landed or started meanwhile: it holds at least what this answer would
        // add (it started after these updates were heard); decide again from there.
        if (list.generation !== generation || query.state.fetchStatus !== "idle") continue;
        // The server stores a change before publishing it, so an answer asked after
        // hearing `wanted` stands at or past it; anything else cannot be trusted.
        if (!answer || answer.kind === "resync" || answer.seq < wanted) {
          this.invalidate(query);
          return;
        }
        const data = query.state.data;
        const patched = Array.isArray(data) ? applyChanges(data, answer.upserts, answer.deletes) : null;
        if (!patched) {
          this.invalidate(query);
          return;
        }
        if (answer.upserts.length > 0 || answer.deletes.length > 0) this.queryClient.setQueryData(query.queryKey, patched);
        list.seq = answer.seq;
      }
    } finally {
      list.running = false;
    }
  }
}
