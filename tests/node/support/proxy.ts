// A TCP proxy between a client and the server that a test can cut (the network drops)
// or stall (bytes stop arriving, the connection stays open), and that records the head
// of the first HTTP request on each connection (an event stream has its connection to
// itself).

import net from "node:net";

export interface RecordedRequest {
  method: string;
  /** Path and query string, decoded. */
  target: string;
  /** Header names in lower case. */
  headers: Record<string, string>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  stalled: boolean;
}

export class Proxy {
  readonly requests: RecordedRequest[] = [];
  private readonly pairs = new Set<Pair>();
  private readonly server: net.Server;
  private accepting = true;

  private constructor(private readonly targetPort: number) {
    this.server = net.createServer((client) => this.accept(client));
  }

  /** A proxy to `127.0.0.1:<targetPort>` on a free port. */
  static async start(targetPort: number): Promise<Proxy> {
    const proxy = new Proxy(targetPort);
    await new Promise<void>((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get base(): string {
    const address = this.server.address() as net.AddressInfo;
    return `http://127.0.0.1:${address.port}`;
  }

  /** The requests for `path`, oldest first. */
  requestsFor(path: string): RecordedRequest[] {
    return this.requests.filter((r) => r.target.split("?")[0] === path);
  }

  /** Drops every open connection, as a network failure would. New ones go through. */
  cut(): void {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.pairs.clear();
  }

  /** Drops every open connection and refuses new ones until `up()`: the server is unreachable. */
  down(): void {
    this.accepting = false;
    this.cut();
  }

  up(): void {
    this.accepting = true;
  }

  /** Stops delivering the server's bytes on every open connection, without closing it. */
  stall(): void {
    for (const pair of this.pairs) pair.stalled = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    if (!this.accepting) {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.targetPort, "127.0.0.1");
    const pair: Pair = { client, upstream, stalled: false };
    this.pairs.add(pair);
    let head = "";
    client.on("data", (chunk) => {
      if (!head.includes("\r\n\r\n")) {
        head += chunk.toString("latin1");
        if (head.includes("\r\n\r\n")) this.record(head);
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (!pair.stalled) client.write(chunk);
    });
    const close = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", close).on("error", close);
    upstream.on("close", close).on("error", close);
  }

  private record(head: string): void {
    const [requestLine = "", ...lines] = head.split("\r\n\r\n")[0]!.split("\r\n");
    const [method = "", target = ""] = requestLine.split(" ");
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(":");
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    this.requests.push({ method, target: decodeURIComponent(target), headers });
  }
}
