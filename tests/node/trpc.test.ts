// The stock @trpc/client, typed by the generated AppRouter, against the real server:
// every query, a batched call, every mutation, errors, and a wrong input caught by tsc.

import { TRPCClientError } from "@trpc/client";
import { UPDATE_QUERY_MAP, type AppRouter, type QueryPath, type UpdateType, type Volume } from "@stalecast/bindings";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { makeClient } from "./support/client";
import { startServer, type Server } from "./support/server";

/** Every update type, sorted. */
/** The cloud's collections. */
const COLLECTIONS: UpdateType[] = ["flavors", "images", "networks", "projects", "servers", "snapshots", "subnets", "volumes"];
/** Every update type: the collections and the server's own figures. */
const ALL_TYPES: UpdateType[] = [...COLLECTIONS, "serverStats"].sort() as UpdateType[];

let server: Server;
let api: ReturnType<typeof makeClient>;

beforeAll(async () => {
  server = await startServer();
  api = makeClient(server.base, { cookie: server.cookie });
});

afterAll(async () => {
  await server?.stop();
});

/** The error a call failed with, as the stock client reports it. */
async function failure(call: Promise<unknown>): Promise<TRPCClientError<AppRouter>> {
  try {
    await call;
  } catch (error) {
    if (error instanceof TRPCClientError) return error as TRPCClientError<AppRouter>;
    throw error;
  }
  throw new Error("the call succeeded");
}

describe("queries", () => {
  it("answer every query with the declared types", async () => {
    const { client } = api;
    const projects = await client.projects.list.query();
    expect(projects.map((p) => p.id).sort()).toEqual(["prj-admin", "prj-data", "prj-web"]);
    expect(projects.every((p) => typeof p.enabled === "boolean")).toBe(true);

    const servers = await client.compute.servers.list.query();
    expect(servers.length).toBeGreaterThan(0);
    const web = await client.compute.servers.list.query({ projectId: "prj-web" });
    expect(web.length).toBeGreaterThan(0);
    expect(web.every((s) => s.projectId === "prj-web")).toBe(true);
    const first = servers[0]!;
    expect(await client.compute.servers.get.query({ id: first.id })).toEqual(first);

    const volumes: Volume[] = await client.storage.volumes.list.query();
    expect(volumes.length).toBeGreaterThan(0);
    expect(volumes.every((v) => typeof v.sizeGb === "number")).toBe(true);
    const data = await client.storage.volumes.list.query({ projectId: "prj-data" });
    expect(data.every((v) => v.projectId === "prj-data")).toBe(true);
    expect(await client.storage.volumes.get.query({ id: volumes[0]!.id })).toEqual(volumes[0]);

    const images = await client.images.list.query();
    expect(images.length).toBeGreaterThan(0);
    expect(images.every((i) => typeof i.sizeBytes === "number" && typeof i.minDiskGb === "number")).toBe(true);
    const networks = await client.networks.list.query(null);
    expect(networks.some((n) => n.id === "net-public" && n.shared)).toBe(true);
    const subnets = await client.networks.subnets.list.query({ projectId: "prj-web" });
    expect(subnets.every((s) => s.projectId === "prj-web" && (s.ipVersion === 4 || s.ipVersion === 6))).toBe(true);
    expect(await client.networks.subnets.get.query({ id: subnets[0]!.id })).toEqual(subnets[0]);
    const snapshots = await client.storage.snapshots.page.query({ sort: "-sizeGb", limit: 2 });
    expect(snapshots.items).toHaveLength(2);
    expect(typeof snapshots.total === "number" && typeof snapshots.seq === "number").toBe(true);
    expect(await client.storage.snapshots.get.query({ id: snapshots.items[0]!.id })).toEqual(snapshots.items[0]);
    const flavors = await client.compute.flavors.list.query();
    expect(flavors.find((f) => f.name === "m1.small")).toMatchObject({ vcpus: 1, ramMb: 2048, diskGb: 20, isPublic: true });
    const unchanged = await client.compute.flavors.changes.query({ since: snapshots.seq });
    expect(unchanged.kind === "resync" || unchanged.upserts.length === 0).toBe(true);

    const state = await client.updates.state.query();
    expect(state.ringSize).toBe(4096);
    expect(typeof state.seq).toBe("number");
    expect(state.types.map((t) => t.type).sort()).toEqual(ALL_TYPES);

    const stats = await client.server.stats.query();
    expect(stats.nodes).toHaveLength(1);
    expect(stats.nodes[0]).toMatchObject({ polls: true });
    expect(stats.collections.map((c) => c.type).sort()).toEqual(COLLECTIONS);
    expect(stats.services.map((s) => s.service)).toContain("compute");
  });

  it("batch concurrent calls into one request, each with its own result or error", async () => {
    const { client, requests } = api;
    const before = requests.length;
    const [projects, volumes, state, missing] = await Promise.allSettled([
      client.projects.list.query(),
      client.storage.volumes.list.query({ projectId: "prj-web" }),
      client.updates.state.query(),
      client.storage.volumes.get.query({ id: "vol-nope" }),
    ]);
    const sent = requests.slice(before);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.url).toContain("/trpc/projects.list,storage.volumes.list,updates.state,storage.volumes.get?batch=1");
    expect(projects.status === "fulfilled" && projects.value.length).toBe(3);
    expect(volumes.status === "fulfilled" && volumes.value.every((v) => v.projectId === "prj-web")).toBe(true);
    expect(state.status === "fulfilled" && state.value.types.length).toBe(ALL_TYPES.length);
    expect(missing.status).toBe("rejected");
    const error = (missing as PromiseRejectedResult).reason as TRPCClientError<AppRouter>;
    expect(error.data?.code).toBe("NOT_FOUND");
    expect(error.data?.httpStatus).toBe(404);
    expect(error.data?.path).toBe("storage.volumes.get");
  });

  it("go over httpLink when a call skips the batch", async () => {
    const { client, requests } = api;
    const before = requests.length;
    const projects = await client.projects.list.query(undefined, { context: { skipBatch: true } });
    expect(projects).toHaveLength(3);
    const sent = requests.slice(before);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.url).toMatch(/\/trpc\/projects\.list(\?|$)/);
    expect(sent[0]!.url).not.toContain("batch=1");
  });

  it("every path in UPDATE_QUERY_MAP is a query the server answers", async () => {
    const types = Object.keys(UPDATE_QUERY_MAP) as UpdateType[];
    expect(types.sort()).toEqual(ALL_TYPES);
    for (const type of types) {
      const paths: readonly QueryPath[] = UPDATE_QUERY_MAP[type];
      expect(paths.length).toBeGreaterThan(0);
      for (const path of paths) {
        const response = await fetch(`${server.base}/trpc/${path}`, { headers: { cookie: server.cookie } });
        // 200, or 400 for a query that needs an input: never "no such procedure" or "not a query".
        expect([200, 400], `${type} → ${path}`).toContain(response.status);
      }
    }
  });
});

describe("mutations", () => {
  it("create, stop, start and delete a server", async () => {
    const { client } = api;
    const created = await client.compute.servers.create.mutate({ projectId: "prj-web", name: "node-api", flavor: "m1.large", imageId: "img-cirros" });
    expect(created.status).toBe("BUILD");
    expect(created.flavor).toBe("m1.large");
    expect(await client.compute.servers.get.query({ id: created.id })).toMatchObject({ id: created.id, name: "node-api" });

    const admin = await client.compute.servers.list.query({ projectId: "prj-admin" });
    const running = admin.find((s) => s.status === "ACTIVE")!;
    expect(running).toBeDefined();
    const stopped = await client.compute.servers.stop.mutate({ id: running.id }, { context: { skipBatch: true } });
    expect(stopped.status).toBe("SHUTOFF");
    const again = await failure(client.compute.servers.stop.mutate({ id: running.id }));
    expect(again.data?.code).toBe("CONFLICT");
    expect(again.data?.httpStatus).toBe(409);
    const started = await client.compute.servers.start.mutate({ id: running.id });
    expect(started.status).toBe("ACTIVE");

    expect(await client.compute.servers.delete.mutate({ id: created.id })).toEqual({ id: created.id });
    const gone = await failure(client.compute.servers.get.query({ id: created.id }));
    expect(gone.data?.code).toBe("NOT_FOUND");
  });

  it("create and delete volumes, batched", async () => {
    const { client, requests } = api;
    const before = requests.length;
    const [a, b] = await Promise.all([
      client.storage.volumes.create.mutate({ projectId: "prj-web", name: "node-a", sizeGb: 1 }),
      client.storage.volumes.create.mutate({ projectId: "prj-data", name: "node-b", sizeGb: 2, description: "batched" }),
    ]);
    const sent = requests.slice(before);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.method).toBe("POST");
    expect(sent[0]!.url).toContain("storage.volumes.create,storage.volumes.create?batch=1");
    expect(a).toMatchObject({ name: "node-a", sizeGb: 1, status: "creating", projectId: "prj-web" });
    expect(b).toMatchObject({ name: "node-b", sizeGb: 2, description: "batched" });

    expect(await client.storage.volumes.delete.mutate({ id: a.id })).toEqual({ id: a.id });
    expect(await client.storage.volumes.delete.mutate({ id: b.id }, { context: { skipBatch: true } })).toEqual({ id: b.id });
    const twice = await failure(client.storage.volumes.delete.mutate({ id: a.id }));
    expect(twice.data?.code).toBe("NOT_FOUND");
  });

  it("snapshot a volume and add a subnet, and hear the cloud's refusals", async () => {
    const { client } = api;
    const volume = (await client.storage.volumes.page.query({ projectId: "prj-web", status: "available", sort: "-name", limit: 1 })).items[0]!;
    const snapshot = await client.storage.snapshots.create.mutate({ volumeId: volume.id, name: "node-snap" });
    expect(snapshot).toMatchObject({ volumeId: volume.id, projectId: "prj-web", status: "creating", sizeGb: volume.sizeGb });
    const busy = await failure(client.storage.volumes.delete.mutate({ id: volume.id }));
    expect(busy.data?.code).toBe("CONFLICT");
    const subnet = await client.networks.subnets.create.mutate({ networkId: "net-admin", cidr: "10.0.9.0/24" });
    expect(subnet).toMatchObject({ networkId: "net-admin", cidr: "10.0.9.0/24", ipVersion: 4, gatewayIp: "10.0.9.1" });
    const overlap = await failure(client.networks.subnets.create.mutate({ networkId: "net-admin", cidr: "10.0.9.0/25" }));
    expect(overlap.data?.code).toBe("BAD_REQUEST");
    expect(overlap.message).toContain("overlaps with another subnet");
    expect(await client.networks.subnets.delete.mutate({ id: subnet.id })).toEqual({ id: subnet.id });
  });

  it("reject bad input with BAD_REQUEST naming the field", async () => {
    const { client } = api;
    const error = await failure(client.storage.volumes.create.mutate({ projectId: "prj-web", name: "zero", sizeGb: 0 }));
    expect(error.data?.code).toBe("BAD_REQUEST");
    expect(error.data?.httpStatus).toBe(400);
    expect(error.message).toContain("input.sizeGb");
    const project = await failure(client.compute.servers.create.mutate({ projectId: "prj-nope", name: "x" }));
    expect(project.message).toContain("input.projectId");
  });

  it("a wrong input type is a compile error, and the server refuses it too", async () => {
    const { client } = api;
    const wrong = failure(
      // @ts-expect-error sizeGb is a number: tsc --noEmit fails if the generated types accept a string
      client.storage.volumes.create.mutate({ projectId: "prj-web", name: "typed", sizeGb: "ten" }),
    );
    const error = await wrong;
    expect(error.data?.code).toBe("BAD_REQUEST");
    expect(error.message).toContain("input.sizeGb");
  });
});
