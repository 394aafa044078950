// A bare EventSource (the `eventsource` package, no tRPC) reads the same stream as the
// stock tRPC client: `connected` first, then one event per update with its seq as the id.

import { EventSource } from "eventsource";
import { afterAll, beforeAll, expect, it } from "vitest";

import { fetchWithCookie, makeClient, Queue, subscribe, type Client } from "./support/client";
import { startServer, type Server } from "./support/server";

let server: Server;
let client: Client;

beforeAll(async () => {
  server = await startServer();
  client = makeClient(server.base, { cookie: server.cookie }).client;
});

afterAll(async () => {
  await server?.stop();
});

interface Received {
  event: string;
  id: string;
  data: string;
}

function open(query = ""): { source: EventSource; received: Queue<Received> } {
  // A browser's EventSource sends the page's cookies by itself; Node's is told to.
  const source = new EventSource(`${server.base}/trpc/updates.onUpdate${query}`, { fetch: fetchWithCookie(server.cookie) });
  const received = new Queue<Received>();
  for (const type of ["connected", "message", "ping"]) {
    source.addEventListener(type, (event) => received.push({ event: type, id: event.lastEventId, data: event.data }));
  }
  return { source, received };
}

async function createVolume(name: string): Promise<string> {
  return (await client.storage.volumes.create.mutate({ projectId: "prj-data", name, sizeGb: 3 })).id;
}

it("receives connected, then each update with its seq as the event id", async () => {
  const { source, received } = open(`?input=${encodeURIComponent(JSON.stringify({ types: ["volumes"] }))}`);
  try {
    const connected = await received.next();
    expect(connected.event).toBe("connected");
    expect(JSON.parse(connected.data)).toEqual({ reconnectAfterInactivityMs: 30_000 });

    const id = await createVolume("bare");
    const message = await received.next((r) => r.event === "message" && r.data.includes(id));
    const data = JSON.parse(message.data);
    expect(data).toMatchObject({ kind: "update", type: "volumes", ids: [id] });
    expect(message.id).toBe(String(data.seq));
  } finally {
    source.close();
  }
});

it("resumes after ?lastEventId= with the updates that followed", async () => {
  const { seq } = await client.updates.state.query();
  const ids = [await createVolume("replay-1"), await createVolume("replay-2")];
  const { source, received } = open(`?lastEventId=${seq}`);
  try {
    const replayed = [];
    for (const id of ids) replayed.push(await received.next((r) => r.event === "message" && r.data.includes(id)));
    const messages = received.all.filter((r) => r.event === "message").map((r) => JSON.parse(r.data).seq as number);
    expect(messages).toEqual(messages.map((_, i) => seq + 1 + i));
    expect(replayed.map((r) => r.id)).toEqual(replayed.map((r) => String(JSON.parse(r.data).seq)));
  } finally {
    source.close();
  }
});

it("carries exactly what the stock client receives", async () => {
  const bare = open();
  const stock = subscribe(client);
  try {
    await bare.received.next((r) => r.event === "connected");
    await stock.started;
    const ids = [await createVolume("same-1"), await createVolume("same-2"), await createVolume("same-3")];
    for (const id of ids) {
      const raw = await bare.received.next((r) => r.event === "message" && r.data.includes(id));
      const tracked = await stock.events.next((e) => (e.data.kind === "update" ? e.data.ids ?? [] : []).includes(id));
      expect(tracked).toEqual({ id: raw.id, data: JSON.parse(raw.data) });
    }
  } finally {
    bare.source.close();
    stock.unsubscribe();
  }
});
