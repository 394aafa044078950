// The subscription `updates.onUpdate` through the stock httpSubscriptionLink: an update
// caused by a mutation, resume without gap after the connection drops (Last-Event-ID) or
// stalls (the client's own reconnect with its tracked lastEventId), and a resync when
// the missed updates are no longer kept.

import { UPDATE_QUERY_MAP } from "@stalecast/bindings";
import { afterEach, describe, expect, it } from "vitest";

import { makeClient, subscribe, type Client, type Tracked } from "./support/client";
import { Proxy } from "./support/proxy";
import { startServer, type Server } from "./support/server";

const cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!();
});

async function setup(flags: string[] = []): Promise<{ server: Server; proxy: Proxy; direct: Client; viaProxy: Client }> {
  const server = await startServer(flags);
  cleanup.push(() => server.stop());
  const proxy = await Proxy.start(server.port);
  cleanup.push(() => proxy.close());
  return { server, proxy, direct: makeClient(server.base, { cookie: server.cookie }).client, viaProxy: makeClient(server.base, { streamBase: proxy.base, cookie: server.cookie }).client };
}

function updateOf(id: string) {
  return (event: Tracked) => event.data.kind === "update" && (event.data.ids ?? []).includes(id);
}

async function createVolume(client: Client, name: string): Promise<string> {
  return (await client.storage.volumes.create.mutate({ projectId: "prj-web", name, sizeGb: 1 })).id;
}

/**
 * The seq of the last event the client took in, once what was on the wire when the
 * connection went down or silent has been read.
 */
async function lastReceived(events: Tracked[]): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 200));
  return events.at(-1)!.data.seq;
}

function eventsAfter(events: Tracked[], seq: number): Tracked[] {
  return events.slice(events.findIndex((e) => e.data.seq === seq) + 1);
}

/** Asserts that `events` continue `after` with no gap and no duplicate: seq after+1, after+2, … */
function expectContiguous(after: number, events: Tracked[]): void {
  const seqs = events.map((e) => e.data.seq);
  expect(seqs).toEqual(seqs.map((_, i) => after + 1 + i));
  for (const event of events) expect(event.id).toBe(String(event.data.seq));
}

describe("updates.onUpdate with the stock client", () => {
  it("delivers the update a mutation causes, as a tracked event", async () => {
    const { direct } = await setup();
    const stream = subscribe(direct);
    cleanup.push(stream.unsubscribe);
    await stream.started;
    const id = await createVolume(direct, "seen");
    const event = await stream.events.next(updateOf(id));
    expect(event.data).toMatchObject({ kind: "update", type: "volumes", ids: [id] });
    expect(event.id).toBe(String(event.data.seq));
    if (event.data.kind !== "update") throw new Error("not an update");
    expect(event.data.ts).toBeGreaterThan(1_600_000_000_000_000);
    expect(UPDATE_QUERY_MAP[event.data.type]).toContain("storage.volumes.list");
    expect(stream.states).toContain("pending");
    expect(stream.errors).toEqual([]);
  });

  it("passes only the chosen types", async () => {
    const { direct } = await setup();
    const stream = subscribe(direct, { types: ["servers"] });
    cleanup.push(stream.unsubscribe);
    await stream.started;
    await createVolume(direct, "filtered-out");
    const server = await direct.compute.servers.create.mutate({ projectId: "prj-data", name: "seen", imageId: "img-cirros" });
    const event = await stream.events.next();
    expect(event.data).toMatchObject({ kind: "update", type: "servers", ids: [server.id] });
  });

  it("resumes after the connection drops with every missed update, in order, once (Last-Event-ID)", async () => {
    const { proxy, direct, viaProxy } = await setup();
    const stream = subscribe(viaProxy);
    cleanup.push(stream.unsubscribe);
    await stream.started;
    await stream.events.next(updateOf(await createVolume(direct, "before")));

    proxy.down();
    const last = await lastReceived(stream.events.all);
    const missed = [];
    for (const name of ["missed-1", "missed-2", "missed-3"]) missed.push(await createVolume(direct, name));
    proxy.up();

    for (const id of missed) await stream.events.next(updateOf(id), 15_000);
    expectContiguous(last, eventsAfter(stream.events.all, last));
    const requests = proxy.requestsFor("/trpc/updates.onUpdate");
    expect(requests.length).toBeGreaterThanOrEqual(2);
    expect(requests.at(-1)!.headers["last-event-id"]).toBe(String(last));
    expect(stream.states).toContain("connecting");
    expect(stream.states.at(-1)).toBe("pending");

    // Then live updates, still without a gap.
    const live = await createVolume(direct, "live");
    await stream.events.next(updateOf(live));
    expectContiguous(last, eventsAfter(stream.events.all, last));
  });

  it("reconnects on its own after an inactivity timeout, from its tracked lastEventId", async () => {
    // Pings every 300 ms: the client gives up on a silent stream after 900 ms.
    const { proxy, direct, viaProxy } = await setup(["--ping-interval", "300ms"]);
    const stream = subscribe(viaProxy);
    cleanup.push(stream.unsubscribe);
    await stream.started;
    await stream.events.next(updateOf(await createVolume(direct, "before")));

    proxy.stall();
    const last = await lastReceived(stream.events.all);
    const missed = [];
    for (const name of ["stalled-1", "stalled-2"]) missed.push(await createVolume(direct, name));
    for (const id of missed) await stream.events.next(updateOf(id), 15_000);
    expectContiguous(last, eventsAfter(stream.events.all, last));

    const requests = proxy.requestsFor("/trpc/updates.onUpdate");
    expect(requests.length).toBeGreaterThanOrEqual(2);
    const resumed = new URLSearchParams(requests.at(-1)!.target.split("?")[1] ?? "");
    expect(JSON.parse(resumed.get("input") ?? "{}")).toMatchObject({ lastEventId: String(last) });
  });

  it("sends a resync when the missed updates are older than the replay ring", async () => {
    const { proxy, direct, viaProxy } = await setup(["--ring-size", "2"]);
    const stream = subscribe(viaProxy);
    cleanup.push(stream.unsubscribe);
    await stream.started;
    const first = await stream.events.next(updateOf(await createVolume(direct, "before")));

    proxy.down();
    for (const name of ["lost-1", "lost-2", "lost-3", "lost-4"]) await createVolume(direct, name);
    const state = await direct.updates.state.query();
    proxy.up();

    const resync = await stream.events.next((e) => e.data.kind === "resync", 15_000);
    expect(resync.data).toMatchObject({ kind: "resync", reason: "gap" });
    expect(resync.data.seq).toBeGreaterThanOrEqual(state.seq);
    expect(resync.data.seq).toBeGreaterThanOrEqual(first.data.seq + 4);
    expect(resync.id).toBe(String(resync.data.seq));

    // Live updates follow the resync.
    const live = await createVolume(direct, "after-resync");
    const event = await stream.events.next(updateOf(live));
    expect(event.data.seq).toBeGreaterThan(resync.data.seq);
  });
});

describe("updates.onUpdate and the session", () => {
  /** Waits until `errors` holds one, and answers it. */
  async function firstError(errors: unknown[], timeoutMs = 5_000): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    while (errors.length === 0) {
      if (Date.now() > deadline) throw new Error(`no error within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return errors[0];
  }

  it("signing out ends the subscription with UNAUTHORIZED, which the stock client does not retry", async () => {
    const { server, proxy } = await setup();
    const alice = makeClient(server.base, { streamBase: proxy.base, cookie: await server.signIn("alice", "alice") }).client;
    const stream = subscribe(alice);
    cleanup.push(stream.unsubscribe);
    await stream.started;
    const id = await createVolume(alice, "before-sign-out");
    await stream.events.next(updateOf(id));

    const signedOut = Date.now();
    await alice.auth.logout.mutate();
    const error = (await firstError(stream.errors)) as { data?: { code?: string; httpStatus?: number } };
    expect(Date.now() - signedOut).toBeLessThan(1_000);
    expect(error.data).toMatchObject({ code: "UNAUTHORIZED", httpStatus: 401 });
    // No reconnect: one request for the stream, ever.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(proxy.requestsFor("/trpc/updates.onUpdate")).toHaveLength(1);
    await expect(alice.projects.list.query()).rejects.toMatchObject({ data: { code: "UNAUTHORIZED" } });
  });

  it("a reader's mutation is FORBIDDEN naming the project, and others' projects are not listed", async () => {
    const { server } = await setup();
    const bob = makeClient(server.base, { cookie: await server.signIn("bob", "bob") }).client;
    const me = await bob.auth.me.query();
    expect(me.projects.map((p) => [p.name, p.canWrite])).toEqual([["data-team", false]]);
    expect((await bob.projects.list.query()).map((p) => p.id)).toEqual(["prj-data"]);
    await expect(bob.storage.volumes.create.mutate({ projectId: "prj-data", name: "nope", sizeGb: 1 })).rejects.toMatchObject({
      data: { code: "FORBIDDEN", httpStatus: 403 },
      message: expect.stringContaining("data-team"),
    });
  });
});
