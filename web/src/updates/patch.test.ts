import type { ChangesInput, Update, UpdateType } from "@stalecast/bindings";
import { QueryClient, QueryObserver, type QueryKey } from "@tanstack/react-query";
import { afterEach, describe, expect, it } from "vitest";
import { ListPatcher, applyChanges, parseChanges, type ChangesPath } from "./patch";

interface Vol {
  id: string;
  name: string;
}

const vol = (id: string, name = id): Vol => ({ id, name });

function listKey(projectId?: string): QueryKey {
  return [["storage", "volumes", "list"], { input: projectId === undefined ? {} : { projectId }, type: "query" }];
}

/** An update of `type`; `ids: null` for one without ids. */
function update(seq: number, ids: string[] | null = ["x"], type: UpdateType = "volumes"): Update {
  return { type, seq, ts: seq, ...(ids ? { ids } : {}) };
}

/** A promise the test resolves or rejects by hand. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets promise callbacks (and TanStack's batched notifications) run. */
const flush = () => new Promise((resolve) => setTimeout(resolve, 0));

interface ChangesCall {
  path: ChangesPath;
  input: ChangesInput;
  answer: ReturnType<typeof deferred<unknown>>;
}

/**
 * A query client, a patcher watching it, a scripted stream seq, list fetches answered
 * from `server` (or held by the test), and every `changes` call held until answered.
 */
function harness() {
  const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
  let seq: number | null = null;
  const calls: ChangesCall[] = [];
  const patcher = new ListPatcher(
    queryClient,
    (path, input) => {
      const answer = deferred<unknown>();
      calls.push({ path, input, answer });
      return answer.promise;
    },
    () => seq,
  );
  const stop = patcher.start();
  const server = { volumes: [vol("a"), vol("b"), vol("c")] as Vol[], fetches: 0, hold: false };
  const held: Array<ReturnType<typeof deferred<Vol[]>>> = [];
  const queryFn = () => {
    server.fetches += 1;
    if (!server.hold) return Promise.resolve(server.volumes.slice());
    const answer = deferred<Vol[]>();
    held.push(answer);
    return answer.promise;
  };
  const unsubscribers: Array<() => void> = [];
  /** Shows the list (an active observer), and waits until it loaded. */
  async function show(key = listKey()) {
    const observer = new QueryObserver(queryClient, { queryKey: key, queryFn });
    unsubscribers.push(observer.subscribe(() => {}));
    await flush();
    return observer;
  }
  const data = (key = listKey()) => queryClient.getQueryData<Vol[]>(key);
  const at = (s: number | null) => {
    seq = s;
  };
  /** Hears an update: the stream seq moves first, as `useSSEUpdates` does. */
  async function hear(event: Update) {
    seq = event.seq;
    patcher.update(event);
    await flush();
  }
  const close = () => {
    for (const unsubscribe of unsubscribers) unsubscribe();
    stop();
    queryClient.clear();
  };
  return { queryClient, patcher, calls, server, held, show, data, at, hear, close, queryFn };
}

let h: ReturnType<typeof harness>;
afterEach(() => h?.close());

describe("applyChanges", () => {
  it("removes deletes, replaces upserts in place and appends new ones", () => {
    const list = [vol("a"), vol("b"), vol("c")];
    expect(applyChanges(list, [vol("b", "B2"), vol("d")], ["a"])).toEqual([vol("b", "B2"), vol("c"), vol("d")]);
    // Applying the same answer twice is harmless: upserts are whole records.
    const once = applyChanges(list, [vol("d")], ["a"])!;
    expect(applyChanges(once, [vol("d")], ["a"])).toEqual(once);
    expect(list).toEqual([vol("a"), vol("b"), vol("c")]);
  });

  it("refuses a list whose items have no id", () => {
    expect(applyChanges([{ name: "x" }], [], [])).toBeNull();
  });
});

describe("parseChanges", () => {
  it("accepts changes and resync answers and refuses anything malformed", () => {
    expect(parseChanges({ kind: "changes", seq: 3, upserts: [vol("a")], deletes: ["b"] })).toEqual({
      kind: "changes",
      seq: 3,
      upserts: [vol("a")],
      deletes: ["b"],
    });
    expect(parseChanges({ kind: "resync", seq: 3 })).toEqual({ kind: "resync", seq: 3 });
    for (const bad of [
      null,
      [],
      { kind: "changes", seq: -1, upserts: [], deletes: [] },
      { kind: "changes", seq: 1.5, upserts: [], deletes: [] },
      { kind: "changes", seq: 1, upserts: {}, deletes: [] },
      { kind: "changes", seq: 1, upserts: [{ name: "no id" }], deletes: [] },
      { kind: "changes", seq: 1, upserts: [], deletes: [7] },
      { kind: "changes", seq: 1, upserts: [] },
      { kind: "other", seq: 1 },
    ]) {
      expect(parseChanges(bad)).toBeNull();
    }
  });
});

describe("ListPatcher", () => {
  it("patches a shown list from changes since the seq it was fetched at, without refetching it", async () => {
    h = harness();
    h.at(10);
    await h.show();
    expect(h.server.fetches).toBe(1);

    await h.hear(update(11, ["b"]));
    expect(h.calls).toHaveLength(1);
    expect(h.calls[0]!.path).toBe("storage.volumes.changes");
    expect(h.calls[0]!.input).toEqual({ since: 10 });
    h.calls[0]!.answer.resolve({ kind: "changes", seq: 11, upserts: [vol("b", "B2"), vol("d")], deletes: ["a"] });
    await h.patcher.settled();
    expect(h.data()).toEqual([vol("b", "B2"), vol("c"), vol("d")]);
    expect(h.server.fetches).toBe(1);

    // The next update asks from where the answer left the list.
    await h.hear(update(12, ["c"]));
    expect(h.calls[1]!.input).toEqual({ since: 11 });
    h.calls[1]!.answer.resolve({ kind: "changes", seq: 12, upserts: [], deletes: ["c"] });
    await h.patcher.settled();
    expect(h.data()).toEqual([vol("b", "B2"), vol("d")]);
    expect(h.server.fetches).toBe(1);
    expect(h.patcher.seqOf(h.queryClient.getQueryCache().find({ queryKey: listKey() })!.queryHash)).toBe(12);
  });

  it("passes the list's projectId to changes", async () => {
    h = harness();
    h.at(5);
    await h.show(listKey("prj-web"));
    await h.hear(update(6));
    expect(h.calls.map((c) => c.input)).toEqual([{ since: 5, projectId: "prj-web" }]);
  });

  it("refetches on a resync answer", async () => {
    h = harness();
    h.at(10);
    await h.show();
    await h.hear(update(11));
    h.server.volumes = [vol("z")];
    h.calls[0]!.answer.resolve({ kind: "resync", seq: 11 });
    await h.patcher.settled();
    await flush();
    expect(h.server.fetches).toBe(2);
    expect(h.data()).toEqual([vol("z")]);
  });

  it("refetches when changes fails or answers something malformed", async () => {
    h = harness();
    h.at(10);
    await h.show();
    await h.hear(update(11));
    h.calls[0]!.answer.reject(new Error("502"));
    await h.patcher.settled();
    await flush();
    expect(h.server.fetches).toBe(2);

    await h.hear(update(12));
    expect(h.calls[1]!.input).toEqual({ since: 11 });
    h.calls[1]!.answer.resolve({ kind: "changes", seq: 12, upserts: [{ name: "no id" }], deletes: [] });
    await h.patcher.settled();
    await flush();
    expect(h.server.fetches).toBe(3);
    expect(h.data()).toEqual(h.server.volumes);
  });

  it("refetches, without asking changes, on an update without ids", async () => {
    h = harness();
    h.at(10);
    await h.show();
    await h.hear(update(11, null));
    expect(h.calls).toHaveLength(0);
    expect(h.server.fetches).toBe(2);
  });

  it("refetches a list fetched before any event was heard (its seq is unknown), then patches it", async () => {
    h = harness();
    await h.show();
    await h.hear(update(11));
    expect(h.calls).toHaveLength(0);
    expect(h.server.fetches).toBe(2);
    // That refetch started after seq 11 was heard: the list is now current to 11.
    await h.hear(update(12));
    expect(h.calls.map((c) => c.input)).toEqual([{ since: 11 }]);
  });

  it("only marks an inactive list stale: no changes call, no fetch", async () => {
    h = harness();
    h.at(10);
    await h.show(listKey("prj-a"));
    h.queryClient.setQueryData(listKey("prj-b"), [vol("b")]);
    await h.hear(update(11));
    const hidden = h.queryClient.getQueryCache().find({ queryKey: listKey("prj-b"), exact: true })!;
    expect(hidden.state.isInvalidated).toBe(true);
    expect(h.calls.map((c) => c.input)).toEqual([{ since: 10, projectId: "prj-a" }]);
    expect(h.server.fetches).toBe(1);
  });

  it("keeps invalidating the type's other queries (get)", async () => {
    h = harness();
    h.at(10);
    await h.show();
    const get: QueryKey = [["storage", "volumes", "get"], { input: { id: "a" }, type: "query" }];
    const servers: QueryKey = [["compute", "servers", "get"], { input: { id: "s" }, type: "query" }];
    h.queryClient.setQueryData(get, vol("a"));
    h.queryClient.setQueryData(servers, { id: "s" });
    await h.hear(update(11, ["a"]));
    expect(h.queryClient.getQueryState(get)?.isInvalidated).toBe(true);
    expect(h.queryClient.getQueryState(servers)?.isInvalidated).toBe(false);
    expect(h.queryClient.getQueryState(listKey())?.isInvalidated).toBe(false);
  });

  it("coalesces: three updates while one patch is in flight make one more changes call, not three", async () => {
    h = harness();
    h.at(10);
    await h.show();
    await h.hear(update(11, ["d"]));
    await h.hear(update(12, ["e"]));
    await h.hear(update(13, ["f"]));
    await h.hear(update(14, ["g"]));
    expect(h.calls).toHaveLength(1);
    // The first answer already stands at 12 (the server had stored 12 when it answered).
    h.calls[0]!.answer.resolve({ kind: "changes", seq: 12, upserts: [vol("d"), vol("e")], deletes: [] });
    await flush();
    expect(h.calls).toHaveLength(2);
    expect(h.calls[1]!.input).toEqual({ since: 12 });
    h.calls[1]!.answer.resolve({ kind: "changes", seq: 14, upserts: [vol("f"), vol("g")], deletes: ["a"] });
    await h.patcher.settled();
    expect(h.calls).toHaveLength(2);
    expect(h.data()?.map((v) => v.id)).toEqual(["b", "c", "d", "e", "f", "g"]);
    expect(h.server.fetches).toBe(1);
  });

  it("skips an update the list already holds", async () => {
    h = harness();
    h.at(10);
    await h.show();
    await h.hear(update(11));
    h.calls[0]!.answer.resolve({ kind: "changes", seq: 13, upserts: [], deletes: [] });
    await h.patcher.settled();
    // 12 and 13 were stored before that answer: it covered them.
    await h.hear(update(12));
    await h.hear(update(13));
    expect(h.calls).toHaveLength(1);
    // One it holds and one it does not, back to back in one task: the second is not lost.
    h.at(15);
    h.patcher.update(update(13));
    h.patcher.update(update(15));
    await flush();
    expect(h.calls.map((c) => c.input)).toEqual([{ since: 10 }, { since: 13 }]);
  });

  it("does not patch a list being fetched; patches it from the fetch's seq when it lands", async () => {
    h = harness();
    h.at(10);
    await h.show();
    h.server.hold = true;
    h.at(20);
    void h.queryClient.refetchQueries({ queryKey: listKey() });
    await flush();
    expect(h.held).toHaveLength(1);
    await h.hear(update(21));
    await h.hear(update(22));
    // Not refetched again (which would cancel the one in flight), not patched yet.
    expect(h.server.fetches).toBe(2);
    expect(h.calls).toHaveLength(0);
    h.held[0]!.resolve([vol("a")]);
    await flush();
    expect(h.calls.map((c) => c.input)).toEqual([{ since: 20 }]);
    h.calls[0]!.answer.resolve({ kind: "changes", seq: 22, upserts: [vol("n")], deletes: [] });
    await h.patcher.settled();
    expect(h.data()).toEqual([vol("a"), vol("n")]);
    expect(h.server.fetches).toBe(2);
  });

  it("drops a changes answer that a refetch overtook", async () => {
    h = harness();
    h.at(10);
    await h.show();
    await h.hear(update(11));
    // A refetch (a resync, say) starts and lands while the patch is in flight.
    h.server.volumes = [vol("fresh")];
    h.at(30);
    await h.queryClient.refetchQueries({ queryKey: listKey() });
    h.calls[0]!.answer.resolve({ kind: "changes", seq: 11, upserts: [vol("old")], deletes: [] });
    await h.patcher.settled();
    expect(h.data()).toEqual([vol("fresh")]);
    expect(h.calls).toHaveLength(1);
  });

  it("refetches when the answer is behind the update it was asked for", async () => {
    h = harness();
    h.at(10);
    await h.show();
    await h.hear(update(11));
    h.calls[0]!.answer.resolve({ kind: "changes", seq: 10, upserts: [], deletes: [] });
    await h.patcher.settled();
    await flush();
    expect(h.server.fetches).toBe(2);
  });

  it("forgets every seq on reset: the next update refetches rather than trusting an old numbering", async () => {
    h = harness();
    h.at(5000);
    await h.show();
    h.patcher.reset();
    h.at(3);
    h.queryClient.setQueryData(listKey(), [vol("manual")]);
    await h.hear(update(4));
    expect(h.calls).toHaveLength(0);
    expect(h.server.fetches).toBe(2);
  });
});
