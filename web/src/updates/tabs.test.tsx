import type { StreamEvent, UpdateType } from "@stalecast/bindings";
import { useQuery, type QueryClient } from "@tanstack/react-query";
import { act, cleanup, render, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { createQueryClient } from "../queryClient";
import { FakeServer, Providers } from "../test/fakeServer";
import { FakeBrowser, type FakeTab } from "../test/fakeTabs";
import { useTRPC } from "../trpc";
import { useUpdates } from "./context";
import { parseEnvelope } from "./tabs";

function update(type: UpdateType, seq: number, ids?: string[]): StreamEvent {
  return { kind: "update", type, seq, ts: 1_763_800_000_000_000 + seq, ...(ids ? { ids } : {}) };
}

/** What one tab shows: its role, connection state, last seq, the events it applied and its volumes. */
function Tab() {
  const { state, role, lastSeq, events } = useUpdates();
  const trpc = useTRPC();
  const volumes = useQuery(trpc.storage.volumes.list.queryOptions({}));
  return (
    <div>
      <span data-testid="role">{role}</span>
      <span data-testid="state">{state}</span>
      <span data-testid="seq">{lastSeq ?? "none"}</span>
      <span data-testid="events">{events.map((e) => e.event.seq).join(",")}</span>
      <span data-testid="volumes">{volumes.data?.length ?? "-"}</span>
    </div>
  );
}

interface OpenTab {
  tab: FakeTab;
  server: FakeServer;
  queryClient: QueryClient;
  /** What the tab shows for `testid`. */
  text(testid: string): string;
  /** The tab's open subscriptions (only a holder or a lone tab has one). */
  open(): FakeServer["subscriptions"];
  close(): void;
}

const clients: QueryClient[] = [];

afterEach(() => {
  cleanup();
  for (const client of clients.splice(0)) client.clear();
});

/** Opens one tab of the dashboard in `browser` (`null`: a browser without Web Locks). */
function openTab(
  browser: FakeBrowser | null,
  name: string,
  { visible = false, answers = {} }: { visible?: boolean; answers?: Record<string, (input: unknown) => unknown> } = {},
): OpenTab {
  const tab = (browser ?? new FakeBrowser()).tab(name);
  tab.visible = visible;
  const server = new FakeServer({ "storage.volumes.list": () => [{ id: "vol-1" }], ...answers });
  const queryClient = createQueryClient();
  clients.push(queryClient);
  const view = render(
    <Providers
      server={server}
      queryClient={queryClient}
      options={{ retryDelayMs: 20, tabs: browser ? tab.env() : null, tabOptions: { probeMs: 20, takeoverMs: 120 } }}
    >
      <Tab />
    </Providers>,
  );
  return {
    tab,
    server,
    queryClient,
    text: (testid) => within(view.container).getByTestId(testid).textContent ?? "",
    open: () => server.subscriptions.filter((s) => !s.closed),
    close() {
      view.unmount();
      browser?.close(tab);
    },
  };
}

/** The one open subscription among `tabs`, and the tab that holds it. */
function holderOf(tabs: OpenTab[]): OpenTab {
  const holders = tabs.filter((t) => t.open().length > 0);
  expect(holders).toHaveLength(1);
  return holders[0]!;
}

/** Tab `a` holding a live stream that delivered update `seq`, and tab `b` following it. */
async function holderAndFollower(browser: FakeBrowser, seq: number, { visible = false } = {}) {
  const a = openTab(browser, "a");
  await waitFor(() => expect(a.text("role")).toBe("holder"));
  const b = openTab(browser, "b", { visible });
  act(() => a.server.connected());
  act(() => a.server.send(update("volumes", seq), String(seq)));
  await waitFor(() => expect(b.text("seq")).toBe(String(seq)));
  return { a, b };
}

describe("tabs sharing one stream", () => {
  it("elect one holder: one subscription for both tabs, both live, each update applied once in each", async () => {
    const browser = new FakeBrowser();
    const a = openTab(browser, "a");
    await waitFor(() => expect(a.text("role")).toBe("holder"));
    const b = openTab(browser, "b");
    await waitFor(() => expect(b.text("role")).toBe("follower"));
    expect(a.open()).toHaveLength(1);
    expect(b.server.subscriptions).toHaveLength(0);

    act(() => a.server.connected());
    await waitFor(() => expect(b.text("state")).toBe("live"));
    expect(a.text("state")).toBe("live");
    await waitFor(() => expect(b.text("volumes")).toBe("1"));
    await waitFor(() => expect(b.queryClient.isFetching()).toBe(0));
    const before = b.server.count("storage.volumes.list");

    act(() => a.server.send(update("volumes", 11, ["vol-1"]), "11"));
    act(() => a.server.send(update("servers", 12), "12"));
    // The follower refetches its own volumes, as the holder does.
    await waitFor(() => expect(b.server.count("storage.volumes.list")).toBe(before + 1));
    for (const t of [a, b]) {
      await waitFor(() => expect(t.text("events")).toBe("12,11"));
      expect(t.text("seq")).toBe("12");
    }
  });

  it("a follower patches its lists from the changes query, as the holder does", async () => {
    const browser = new FakeBrowser();
    const a = openTab(browser, "a");
    await waitFor(() => expect(a.text("role")).toBe("holder"));
    const asked: unknown[] = [];
    const b = openTab(browser, "b", {
      answers: {
        "storage.volumes.changes": (input) => {
          asked.push(input);
          return { kind: "changes", seq: 62, upserts: [{ id: "vol-2" }], deletes: [] };
        },
      },
    });
    act(() => a.server.connected());
    // Without ids: refetched, and from then on current to 61.
    act(() => a.server.send(update("volumes", 61), "61"));
    await waitFor(() => expect(b.text("seq")).toBe("61"));
    await waitFor(() => expect(b.queryClient.isFetching()).toBe(0));
    const lists = b.server.count("storage.volumes.list");

    act(() => a.server.send(update("volumes", 62, ["vol-2"]), "62"));
    await waitFor(() => expect(b.text("volumes")).toBe("2"));
    expect(asked).toEqual([{ since: 61 }]);
    expect(b.server.count("storage.volumes.list")).toBe(lists);
  });

  it("hand the stream over when the holder closes, resuming after the last seq, nothing applied twice", async () => {
    const browser = new FakeBrowser();
    const a = openTab(browser, "a");
    await waitFor(() => expect(a.text("role")).toBe("holder"));
    act(() => a.server.connected());
    act(() => a.server.send(update("volumes", 21), "21"));
    // A tab that joins later never saw an event: it learns the holder's seq to resume from.
    const b = openTab(browser, "b");
    const c = openTab(browser, "c");
    await waitFor(() => expect(b.text("seq")).toBe("21"));
    act(() => a.server.send(update("volumes", 22), "22"));
    await waitFor(() => expect(c.text("events")).toBe("22"));

    a.close();
    await waitFor(() => expect(holderOf([b, c]).open()).toHaveLength(1));
    const next = holderOf([b, c]);
    const other = next === b ? c : b;
    expect(next.open()[0]!.input).toMatchObject({ lastEventId: "22" });
    act(() => next.server.connected());
    // The server replays what came after 22; a duplicate of 22 is skipped.
    act(() => next.server.send(update("volumes", 22), "22"));
    act(() => next.server.send(update("images", 23), "23"));
    for (const t of [b, c]) await waitFor(() => expect(t.text("seq")).toBe("23"));
    expect(other.text("events")).toBe("23,22");
    expect(other.text("state")).toBe("live");
  });

  it("a holder that is about to be frozen lets go at once, and follows when it resumes", async () => {
    const browser = new FakeBrowser();
    const { a, b } = await holderAndFollower(browser, 31);

    act(() => a.tab.emit("freeze"));
    await waitFor(() => expect(b.open()).toHaveLength(1));
    expect(a.open()).toHaveLength(0);
    expect(b.open()[0]!.input).toMatchObject({ lastEventId: "31" });

    act(() => a.tab.emit("resume"));
    act(() => b.server.connected());
    act(() => b.server.send(update("volumes", 32), "32"));
    await waitFor(() => expect(a.text("seq")).toBe("32"));
    expect(a.text("role")).toBe("follower");
    expect(a.text("state")).toBe("live");
  });

  it("a hung holder is taken over by the tab the user looks at; when it wakes it stops and follows", async () => {
    const browser = new FakeBrowser();
    const { a, b } = await holderAndFollower(browser, 41, { visible: true });
    // Answering: no take-over while the holder answers the visible tab's probes.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(b.text("role")).toBe("follower");

    browser.hung.add(a.tab);
    await waitFor(() => expect(b.open()).toHaveLength(1), { timeout: 2000 });
    expect(b.open()[0]!.input).toMatchObject({ lastEventId: "41" });
    await waitFor(() => expect(a.open()).toHaveLength(0));

    browser.wake(a.tab);
    act(() => b.server.connected());
    act(() => b.server.send(update("volumes", 42), "42"));
    await waitFor(() => expect(a.text("seq")).toBe("42"));
    expect(a.text("role")).toBe("follower");
    expect(a.text("events")).toBe("42,41");
  });

  it("ignore malformed messages, other origins and holders older than the newest", async () => {
    const browser = new FakeBrowser();
    const { a, b } = await holderAndFollower(browser, 51);
    await waitFor(() => expect(b.queryClient.isFetching()).toBe(0));
    const requests = b.server.requests.length;
    const term = browser.term;
    const event = (seq: number) => ({ kind: "event", event: update("volumes", seq) });

    const origin = "http://localhost:3000";
    for (const data of [
      "garbage",
      null,
      { app: "stalecast", tab: "x", term: term + 1, msg: { kind: "event", event: { kind: "update", seq: "52" } } },
      { app: "stalecast", tab: "x", term: term + 1, msg: { kind: "event", event: { kind: "update", type: "volumes", seq: 52, ts: 1, ids: [7] } } },
      { app: "stalecast", tab: "x", term: term + 1, msg: { kind: "state", state: { state: "down", error: null, seq: 1 } } },
      { app: "other", tab: "x", term: term + 1, msg: event(53) },
      // An older holder, and a second tab claiming the current term.
      { app: "stalecast", tab: "old", term: term - 1, msg: event(54) },
      { app: "stalecast", tab: "twin", term, msg: event(55) },
    ]) {
      browser.inject(data, origin);
    }
    // A well-formed message from a newer holder, but from another origin.
    browser.inject({ app: "stalecast", tab: "x", term: term + 5, msg: event(56) }, "https://evil.example");
    await new Promise((resolve) => setTimeout(resolve, 100));

    for (const t of [a, b]) {
      expect(t.text("seq")).toBe("51");
      expect(t.text("events")).toBe("51");
    }
    expect(a.text("role")).toBe("holder");
    expect(a.open()).toHaveLength(1);
    expect(b.server.requests.length).toBe(requests);
    expect(b.queryClient.getQueryCache().findAll().some((q) => q.state.isInvalidated)).toBe(false);

    // The holder's own messages still get through.
    act(() => a.server.send(update("volumes", 57), "57"));
    await waitFor(() => expect(b.text("seq")).toBe("57"));
  });

  it("where the browser lacks Web Locks, every tab has a stream of its own", async () => {
    const a = openTab(null, "a");
    const b = openTab(null, "b");
    expect(a.text("role")).toBe("alone");
    expect(a.open()).toHaveLength(1);
    expect(b.open()).toHaveLength(1);
    act(() => a.server.connected());
    expect(a.text("state")).toBe("live");
    expect(b.text("state")).toBe("connecting");
  });
});

describe("parseEnvelope", () => {
  it("reads only what this build sends", () => {
    const event = { kind: "update", type: "volumes", seq: 3, ts: 4, ids: ["v"] };
    expect(parseEnvelope({ app: "stalecast", tab: "t", term: 2, msg: { kind: "event", event } })).toEqual({
      app: "stalecast",
      tab: "t",
      term: 2,
      msg: { kind: "event", event },
    });
    expect(parseEnvelope({ app: "stalecast", tab: "t", term: -1, msg: { kind: "hello" } })).toBeNull();
    expect(parseEnvelope({ app: "stalecast", tab: "t".repeat(65), term: 1, msg: { kind: "hello" } })).toBeNull();
    expect(parseEnvelope({ app: "stalecast", tab: "t", term: 1, msg: { kind: "shutdown" } })).toBeNull();
    expect(parseEnvelope({ app: "stalecast", tab: "t", term: 1, msg: { kind: "event", event: { ...event, ids: "v" } } })).toBeNull();
  });
});
