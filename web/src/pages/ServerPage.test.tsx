/**
 * The Server page's nodes table against a fake server: a single node shown as "this node",
 * a cluster's nodes by name with the poller marked and when each was last seen, and the
 * table following a `serverStats` update (a poller gone, another polling).
 */
import type { NodeStats, ServerStats, StreamEvent } from "@stalecast/bindings";
import { type QueryClient } from "@tanstack/react-query";
import { act, cleanup, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createQueryClient } from "../queryClient";
import { FakeServer, Providers } from "../test/fakeServer";
import { ServerPage } from "./ServerPage";

const NOW = Date.now();

function node(name: string, figures: Partial<NodeStats> = {}): NodeStats {
  return {
    name,
    thisNode: false,
    lastSeenAt: NOW,
    version: "0.1.0",
    startedAt: NOW - 3_600_000,
    polls: false,
    streams: 0,
    notificationsPerSecond: 0,
    notificationsTotal: 0,
    writesPerSecond: 0,
    deliveryP99Ms: null,
    resyncsTotal: 0,
    ...figures,
  };
}

function stats(nodes: NodeStats[]): ServerStats {
  return { sampledAt: NOW, windowMs: 3000, nodes, services: [], collections: [] };
}

const serverStats = (seq: number): StreamEvent => ({ kind: "update", type: "serverStats", seq, ts: NOW * 1000 });

let queryClient: QueryClient;

beforeEach(() => {
  queryClient = createQueryClient();
});

afterEach(() => {
  cleanup();
  queryClient.clear();
});

/** The page, answering `server.stats` with whatever `answer` holds at each request. */
function mount(answer: { current: ServerStats }) {
  const server = new FakeServer({ "server.stats": () => answer.current });
  render(
    <Providers server={server} queryClient={queryClient} options={{ retryDelayMs: 20 }}>
      <ServerPage />
    </Providers>,
  );
  return server;
}

/** Each row of the nodes table: its name, its polls cell, the figures it shows. */
function nodeRows() {
  const table = screen.getByTestId("stats-nodes");
  return within(table)
    .getAllByRole("row")
    .slice(1)
    .map((row) => ({
      name: row.getAttribute("data-id"),
      polls: row.getAttribute("data-polls"),
      pill: row.querySelector(".pill")?.textContent,
      about: row.querySelector(".cell-id")?.textContent ?? "",
      current: row.getAttribute("aria-current"),
      streams: within(row).getByTestId("stat-streams").textContent,
      rate: within(row).getByTestId("stat-notifications-rate").textContent,
      p99: within(row).getByTestId("stat-delivery-p99").textContent,
      lastSeen: within(row).getByTestId("stat-last-seen").textContent,
    }));
}

describe("ServerPage's nodes", () => {
  it("shows a single node as this node, polling", async () => {
    mount({ current: stats([node("this node", { thisNode: true, polls: true, streams: 3, deliveryP99Ms: 1.5 })]) });
    await waitFor(() => expect(screen.queryByTestId("stats-nodes")).not.toBeNull());
    const headers = within(screen.getByTestId("stats-nodes")).getAllByRole("columnheader").map((h) => h.textContent);
    expect(headers).toEqual(expect.arrayContaining(["Node", "Polls", "Streams", "Notifications/s", "Delivery p99", "Last seen"]));
    const rows = nodeRows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ name: "this node", polls: "yes", pill: "polls", streams: "3", p99: "1.50 ms", lastSeen: "just now" });
    // Nothing to tell apart: no "this node" beside its own name.
    expect(rows[0]?.about.startsWith("this node")).toBe(false);
    expect(rows[0]?.current).toBeNull();
  });

  it("lists every node of a cluster with the poller marked and follows the serverStats updates", async () => {
    const answer = {
      current: stats([
        node("web-1:3000", { thisNode: true, streams: 12, notificationsPerSecond: 2.5, deliveryP99Ms: 3.2 }),
        node("web-2:3000", { polls: true, streams: 7, lastSeenAt: NOW - 5_000 }),
        node("web-3:3000", { streams: 0, lastSeenAt: NOW - 2_000 }),
      ]),
    };
    const server = mount(answer);
    await waitFor(() => expect(nodeRows()).toHaveLength(3));
    const rows = nodeRows();
    expect(rows.map((r) => r.name)).toEqual(["web-1:3000", "web-2:3000", "web-3:3000"]);
    expect(rows.map((r) => r.polls)).toEqual(["no", "yes", "no"]);
    expect(rows.map((r) => r.pill)).toEqual(["standby", "polls", "standby"]);
    expect(rows.map((r) => r.streams)).toEqual(["12", "7", "0"]);
    expect(rows.map((r) => r.rate)).toEqual(["2.5", "0.0", "0.0"]);
    expect(rows.map((r) => r.p99)).toEqual(["3.20 ms", "—", "—"]);
    expect(rows.map((r) => r.lastSeen)).toEqual(["just now", "5s ago", "2s ago"]);
    // The node answering is the one this dashboard talks to.
    expect(rows.map((r) => r.current)).toEqual(["true", null, null]);
    expect(rows[0]?.about.startsWith("this node · v0.1.0")).toBe(true);
    expect(rows[1]?.about.startsWith("v0.1.0")).toBe(true);

    // The poller dies: another node polls, and once its announcement expires it is gone.
    // The page hears of it on its stream, and only then asks again.
    act(() => server.connected());
    await waitFor(() => expect(queryClient.isFetching()).toBe(0));
    const asked = server.count("server.stats");
    answer.current = stats([
      node("web-1:3000", { thisNode: true, polls: true, streams: 12 }),
      node("web-3:3000", { streams: 1 }),
    ]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(nodeRows()).toHaveLength(3);
    act(() => server.send(serverStats(70), "70"));
    await waitFor(() => expect(nodeRows()).toHaveLength(2));
    expect(server.count("server.stats")).toBe(asked + 1);
    const after = nodeRows();
    expect(after.map((r) => [r.name, r.polls, r.streams])).toEqual([
      ["web-1:3000", "yes", "12"],
      ["web-3:3000", "no", "1"],
    ]);
  });
});
