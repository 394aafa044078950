import type { QueryPath, StreamEvent, UpdateType } from "@stalecast/bindings";
import { UPDATE_QUERY_MAP } from "@stalecast/bindings";
import { useQuery, type QueryClient } from "@tanstack/react-query";
import { act, cleanup, render, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createQueryClient } from "../queryClient";
import { FakeServer, Providers } from "../test/fakeServer";
import { useTRPC } from "../trpc";
import { useUpdates } from "./context";
import { pathKey } from "./events";
import { useAutoRefetch } from "./useAutoRefetch";
import type { SSEUpdatesOptions } from "./useSSEUpdates";

/** Every query procedure, from the generated map plus `updates.state`. */
const QUERY_PATHS: QueryPath[] = [...new Set([...Object.values(UPDATE_QUERY_MAP).flat(), "updates.state" as const])];
const TYPES = Object.keys(UPDATE_QUERY_MAP) as UpdateType[];

function update(type: UpdateType, seq: number, ids?: string[]): StreamEvent {
  return { kind: "update", type, seq, ts: 1_763_800_000_000_000 + seq, ...(ids ? { ids } : {}) };
}

function answers() {
  return {
    "compute.servers.list": () => [{ id: "srv-1" }],
    "storage.volumes.list": () => [{ id: "vol-1" }],
    "updates.state": () => ({ seq: 10, ringSize: 4096, types: TYPES.map((type) => ({ type, seq: 0, ts: 0 })) }),
  };
}

/** Shows what the app's one `useSSEUpdates` exposes. */
function Status() {
  const { state, lastSeq, events } = useUpdates();
  return (
    <div>
      <span data-testid="state">{state}</span>
      <span data-testid="seq">{lastSeq ?? "none"}</span>
      <span data-testid="events">{events.map((e) => (e.event.kind === "update" ? e.event.type : "resync")).join(",")}</span>
    </div>
  );
}

/** A page that shows servers and volumes (so those two queries are active). */
function ServersAndVolumes() {
  const trpc = useTRPC();
  const servers = useQuery(trpc.compute.servers.list.queryOptions({}));
  const volumes = useQuery(trpc.storage.volumes.list.queryOptions({}));
  return (
    <span data-testid="loaded">
      {servers.data?.length ?? "-"}/{volumes.data?.length ?? "-"}
    </span>
  );
}

let server: FakeServer;
let queryClient: QueryClient;

beforeEach(() => {
  server = new FakeServer(answers());
  queryClient = createQueryClient();
});

afterEach(() => {
  cleanup();
  queryClient.clear();
  vi.useRealTimers();
});

function mount(children = <Status />, retryDelayMs = 20, extra: SSEUpdatesOptions = {}) {
  const wrap = (content: typeof children) => (
    <Providers server={server} queryClient={queryClient} options={{ retryDelayMs, ...extra }}>
      {content}
    </Providers>
  );
  const view = render(wrap(children));
  /** Renders other children under the same providers (the stream stays open). */
  const show = (next: typeof children) => view.rerender(wrap(next));
  return { ...view, show };
}

/** The status and both lists, as one page. */
const LISTS = (
  <>
    <Status />
    <ServersAndVolumes />
  </>
);

/** Mounts `LISTS`, lets them load, opens the stream and waits until what that refetched is back. */
async function mountLiveLists() {
  const view = mount(LISTS);
  await waitFor(() => expect(screen.getByTestId("loaded").textContent).toBe("1/1"));
  act(() => server.connected());
  await waitFor(() => expect(queryClient.isFetching()).toBe(0));
  return view;
}

/** Puts a cached answer (not invalidated) for every query procedure. */
function seedEveryQuery() {
  for (const path of QUERY_PATHS) {
    queryClient.setQueryData([path.split("."), { input: { id: "x" }, type: "query" }], { seeded: path });
  }
}

/** The key `useQuery(trpc.storage.volumes.list.queryOptions({}))` caches under. */
function trpcListKey() {
  return [["storage", "volumes", "list"], { input: {}, type: "query" }];
}

function invalidatedPaths(): string[] {
  return queryClient
    .getQueryCache()
    .findAll()
    .filter((q) => q.state.isInvalidated)
    .map((q) => (q.queryKey[0] as string[]).join("."))
    .sort();
}

describe("useSSEUpdates", () => {
  it("opens exactly one subscription and reports connecting, live, reconnecting, live", async () => {
    mount();
    expect(screen.getByTestId("state").textContent).toBe("connecting");
    expect(server.subscriptions).toHaveLength(1);

    act(() => server.connected());
    expect(screen.getByTestId("state").textContent).toBe("live");

    act(() => server.dropped());
    expect(screen.getByTestId("state").textContent).toBe("reconnecting");

    act(() => server.connected());
    expect(screen.getByTestId("state").textContent).toBe("live");
    expect(server.subscriptions).toHaveLength(1);
  });

  it("invalidates exactly the query paths UPDATE_QUERY_MAP lists for each type", () => {
    mount();
    act(() => server.connected());
    let seq = 100;
    for (const type of TYPES) {
      seedEveryQuery();
      expect(invalidatedPaths()).toEqual([]);
      act(() => server.send(update(type, ++seq), String(seq)));
      expect(invalidatedPaths()).toEqual([...UPDATE_QUERY_MAP[type]].sort());
    }
  });

  it("refetches only the active queries of the updated type", async () => {
    await mountLiveLists();
    const servers = server.count("compute.servers.list");
    const volumes = server.count("storage.volumes.list");

    act(() => server.send(update("volumes", 201, ["vol-1"]), "201"));
    await waitFor(() => expect(server.count("storage.volumes.list")).toBe(volumes + 1));
    // A cached but inactive query of the type goes stale without a request.
    expect(server.count("storage.volumes.get")).toBe(0);
    expect(server.count("compute.servers.list")).toBe(servers);
    expect(server.count("images.list")).toBe(0);
  });

  it("patches a shown list from its changes query once it knows the list's seq, instead of refetching it", async () => {
    let volumes = [{ id: "vol-1" }];
    const asked: unknown[] = [];
    server = new FakeServer({
      ...answers(),
      "storage.volumes.list": () => volumes,
      "storage.volumes.changes": (input) => {
        asked.push(input);
        return { kind: "changes", seq: 203, upserts: [{ id: "vol-2" }], deletes: ["vol-1"] };
      },
    });
    await mountLiveLists();
    const lists = server.count("storage.volumes.list");
    const servers = server.count("compute.servers.list");

    // Loaded before any event was heard: its seq is unknown, so the first update refetches it…
    volumes = [{ id: "vol-1" }, { id: "vol-9" }];
    act(() => server.send(update("volumes", 201, ["vol-9"]), "201"));
    await waitFor(() => expect(screen.getByTestId("loaded").textContent).toBe("1/2"));
    expect(server.count("storage.volumes.list")).toBe(lists + 1);
    expect(server.count("storage.volumes.changes")).toBe(0);

    // …which makes it current to 201: from then on, updates patch it.
    act(() => server.send(update("volumes", 203, ["vol-1", "vol-2"]), "203"));
    await waitFor(() => expect(server.count("storage.volumes.changes")).toBe(1));
    expect(asked).toEqual([{ since: 201 }]);
    await waitFor(() => expect(queryClient.getQueryData(trpcListKey())).toEqual([{ id: "vol-9" }, { id: "vol-2" }]));
    await waitFor(() => expect(queryClient.isFetching()).toBe(0));
    expect(server.count("storage.volumes.list")).toBe(lists + 1);
    expect(server.count("compute.servers.list")).toBe(servers);
  });

  it("refetches a first load still on its way when the stream goes live: it may predate an update nobody heard", async () => {
    const held: Array<(volumes: unknown) => void> = [];
    server = new FakeServer({ ...answers(), "storage.volumes.list": () => new Promise((resolve) => held.push(resolve)) });
    mount(LISTS);
    await waitFor(() => expect(server.count("storage.volumes.list")).toBe(1));
    act(() => server.connected());
    await waitFor(() => expect(server.count("storage.volumes.list")).toBe(2));
    // The answer read before the stream listened is dropped; the one asked after shows.
    act(() => held[0]!([{ id: "vol-old" }]));
    act(() => held[1]!([{ id: "vol-1" }, { id: "vol-2" }]));
    await waitFor(() => expect(screen.getByTestId("loaded").textContent).toBe("1/2"));
    expect(queryClient.getQueryData(trpcListKey())).toEqual([{ id: "vol-1" }, { id: "vol-2" }]);
  });

  it("invalidates everything on a resync and refetches what is shown", async () => {
    await mountLiveLists();
    seedEveryQuery();
    const servers = server.count("compute.servers.list");
    const volumes = server.count("storage.volumes.list");

    act(() => server.send({ kind: "resync", seq: 300, reason: "gap" }, "300"));
    expect(invalidatedPaths()).toEqual(expect.arrayContaining([...QUERY_PATHS].sort()));
    expect(queryClient.getQueryCache().findAll().every((q) => q.state.isInvalidated || q.state.fetchStatus === "fetching")).toBe(true);
    await waitFor(() => expect(server.count("compute.servers.list")).toBe(servers + 1));
    await waitFor(() => expect(server.count("storage.volumes.list")).toBe(volumes + 1));
    expect(screen.getByTestId("seq").textContent).toBe("300");
    expect(screen.getByTestId("events").textContent).toBe("resync");
  });

  it("reads tracked and bare events, keeps the last seq and logs newest first", () => {
    mount();
    act(() => server.connected());
    expect(screen.getByTestId("seq").textContent).toBe("none");
    act(() => server.send(update("servers", 41, ["srv-1"]), "41"));
    act(() => server.send(update("images", 42)));
    act(() => server.send({ not: "an event" }));
    expect(screen.getByTestId("seq").textContent).toBe("42");
    expect(screen.getByTestId("events").textContent).toBe("images,servers");
  });

  it("names every type, serverStats included, and keeps the server's figures out of the log", async () => {
    function Figures() {
      const trpc = useTRPC();
      const stats = useQuery(trpc.server.stats.queryOptions());
      return <span data-testid="figures">{stats.data?.nodes[0]?.streams ?? "-"}</span>;
    }
    let streams = 1;
    server = new FakeServer({
      ...answers(),
      "server.stats": () => ({ sampledAt: 1, windowMs: 3000, nodes: [{ name: "this node", version: "0.1.0", startedAt: 0, polls: true, streams: streams++, notificationsPerSecond: 0, notificationsTotal: 0, writesPerSecond: 0, deliveryP99Ms: null, resyncsTotal: 0 }], services: [], collections: [] }),
    });
    mount(
      <>
        <Status />
        <Figures />
      </>,
    );
    act(() => server.connected());
    expect((server.current.input as { types: UpdateType[] }).types).toEqual(expect.arrayContaining([...TYPES]));
    expect(TYPES).toContain("serverStats");
    await waitFor(() => expect(screen.getByTestId("figures").textContent).not.toBe("-"));
    // Going live refetches what counted as stale while the stream was down: let it settle.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const asked = server.count("server.stats");
    const shown = screen.getByTestId("figures").textContent;
    act(() => server.send(update("volumes", 60, ["vol-1"]), "60"));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(server.count("server.stats")).toBe(asked);
    act(() => server.send(update("serverStats", 61), "61"));
    await waitFor(() => expect(screen.getByTestId("figures").textContent).toBe(String(Number(shown) + 1)));
    expect(server.count("server.stats")).toBe(asked + 1);
    expect(screen.getByTestId("events").textContent).toBe("volumes");
    expect(screen.getByTestId("seq").textContent).toBe("61");
  });

  it("keeps updates.state current from the stream without refetching it", async () => {
    function LastVolumes() {
      const trpc = useTRPC();
      const state = useQuery(trpc.updates.state.queryOptions());
      const volumes = state.data?.types.find((t) => t.type === "volumes");
      return <span data-testid="last">{volumes ? `${volumes.seq}` : "-"}</span>;
    }
    mount(<LastVolumes />);
    await waitFor(() => expect(screen.getByTestId("last").textContent).toBe("0"));
    act(() => server.connected());
    // Going live refetches what was loaded before the stream listened.
    await waitFor(() => expect(server.count("updates.state")).toBe(2));
    await waitFor(() => expect(queryClient.isFetching()).toBe(0));
    const fetched = server.count("updates.state");
    act(() => server.send(update("volumes", 77), "77"));
    await waitFor(() => expect(screen.getByTestId("last").textContent).toBe("77"));
    expect(server.count("updates.state")).toBe(fetched);
  });

  it("refetches what is shown when it reconnects without an event id to resume from", async () => {
    await mountLiveLists();
    const volumes = server.count("storage.volumes.list");
    act(() => server.dropped());
    act(() => server.connected());
    await waitFor(() => expect(server.count("storage.volumes.list")).toBe(volumes + 1));

    // With an id, a reconnect leaves it to the server (replay or resync): nothing refetches.
    act(() => server.send(update("images", 90), "90"));
    act(() => server.dropped());
    act(() => server.connected());
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(server.count("storage.volumes.list")).toBe(volumes + 1);
  });

  it("subscribes again after a final error, resuming after the last seq", async () => {
    mount();
    act(() => server.connected());
    act(() => server.send(update("volumes", 55), "55"));
    act(() => server.fail());
    expect(screen.getByTestId("state").textContent).toBe("reconnecting");
    await waitFor(() => expect(server.subscriptions.filter((s) => !s.closed)).toHaveLength(1));
    await waitFor(() => expect(server.current.input).toMatchObject({ lastEventId: "55" }));
    act(() => server.connected());
    expect(screen.getByTestId("state").textContent).toBe("live");
  });
});

describe("useSSEUpdates and the session", () => {
  it("stays closed when the session ends (UNAUTHORIZED) and says so, instead of reconnecting", async () => {
    const ended = vi.fn();
    mount(<Status />, 20, { onUnauthorized: ended });
    act(() => server.connected());
    act(() => server.send(update("volumes", 70), "70"));
    act(() => server.unauthorized());
    await waitFor(() => expect(ended).toHaveBeenCalledTimes(1));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(server.subscriptions.filter((s) => !s.closed)).toHaveLength(0);
    expect(server.subscriptions).toHaveLength(1);
  });

  it("after signing in again, resumes after the seq it last saw and reports each seq", async () => {
    const seen: number[] = [];
    mount(<Status />, 20, { resumeFrom: 70, onSeq: (seq) => seen.push(seq) });
    expect(server.current.input).toMatchObject({ lastEventId: "70" });
    act(() => server.connected());
    act(() => server.send(update("volumes", 70), "70"));
    act(() => server.send(update("volumes", 71), "71"));
    expect(seen).toEqual([71]);
  });
});

describe("the refresh policy", () => {
  /** The requests for the two lists `ServersAndVolumes` shows. */
  const listRequests = () => server.requests.filter((p) => p === "compute.servers.list" || p === "storage.volumes.list");

  /** A page with the lists, live and settled; answers how to show it again or leave it. */
  async function liveWithLists() {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const view = await mountLiveLists();
    return { leave: () => view.show(<Status />), back: () => view.show(LISTS) };
  }

  /** The tab comes back to the foreground (TanStack Query refetches stale queries then). */
  function refocus() {
    act(() => {
      window.dispatchEvent(new Event("visibilitychange"));
    });
  }

  it("while the stream is live, nothing polls and shown data stays fresh until the stream says otherwise", async () => {
    const page = await liveWithLists();
    const before = listRequests().length;

    // An hour on screen: no request at all.
    await act(() => vi.advanceTimersByTimeAsync(60 * 60_000));
    expect(listRequests()).toHaveLength(before);
    // Back to the tab, and to the page after another one: the cache is trusted.
    refocus();
    page.leave();
    await act(() => vi.advanceTimersByTimeAsync(60_000));
    page.back();
    await act(() => vi.advanceTimersByTimeAsync(1000));
    expect(screen.getByTestId("loaded").textContent).toBe("1/1");
    expect(listRequests()).toHaveLength(before);

    // Only the stream makes data stale.
    act(() => server.send(update("servers", 400, ["srv-1"]), "400"));
    await waitFor(() => expect(listRequests().slice(before)).toEqual(["compute.servers.list"]));
    await waitFor(() => expect(queryClient.isFetching()).toBe(0));
    expect(listRequests().slice(before)).toEqual(["compute.servers.list"]);
  });

  it("once the stream is down, shown data counts as stale at once", async () => {
    const page = await liveWithLists();
    act(() => server.dropped());
    expect(screen.getByTestId("state").textContent).toBe("reconnecting");
    const before = listRequests().length;

    // Coming back to the tab refetches what is shown…
    refocus();
    await waitFor(() => expect(listRequests()).toHaveLength(before + 2));
    await waitFor(() => expect(queryClient.isFetching()).toBe(0));
    // …and so does coming back to the page, however recent the answer.
    page.leave();
    page.back();
    await waitFor(() => expect(listRequests()).toHaveLength(before + 4));
    expect(new Set(listRequests().slice(before))).toEqual(new Set(["compute.servers.list", "storage.volumes.list"]));
  });
});

describe("useAutoRefetch", () => {
  function Watch({ type }: { type: UpdateType }) {
    const { last, changed } = useAutoRefetch(type, { queryKeys: [["custom", "report"]], highlightMs: 60 });
    return (
      <span data-testid="auto">
        {last ? last.seq : "-"}:{[...changed].join(",")}
      </span>
    );
  }

  it("reports its type's updates, highlights their ids for a while and invalidates extra keys", async () => {
    mount(<Watch type="volumes" />);
    act(() => server.connected());
    queryClient.setQueryData(["custom", "report"], 1);
    act(() => server.send(update("servers", 5, ["srv-9"]), "5"));
    expect(screen.getByTestId("auto").textContent).toBe("-:");
    expect(queryClient.getQueryState(["custom", "report"])?.isInvalidated).toBe(false);

    act(() => server.send(update("volumes", 6, ["vol-1", "vol-2"]), "6"));
    expect(screen.getByTestId("auto").textContent).toBe("6:vol-1,vol-2");
    expect(queryClient.getQueryState(["custom", "report"])?.isInvalidated).toBe(true);
    await waitFor(() => expect(screen.getByTestId("auto").textContent).toBe("6:"));
  });
});

describe("pathKey", () => {
  it("is the prefix @trpc/tanstack-react-query gives a procedure's queries", () => {
    let key: unknown;
    function Probe() {
      key = useTRPC().storage.volumes.list.pathKey();
      return null;
    }
    mount(<Probe />);
    expect(pathKey("storage.volumes.list")).toEqual(key);
  });
});
