/**
 * Server: the figures of the server this dashboard talks to (`server.stats`): its nodes
 * (which one polls the cloud), open streams, notifications per second, delivery p99, and
 * the cloud's services and collections. A single node lists itself as "this node"; in a
 * cluster every live node is listed by name, the one answering marked "this node", each
 * with when it last announced itself. Kept fresh by the stream itself: the server
 * publishes a `serverStats` update when its figures changed (at most every few seconds),
 * which invalidates this query like any other; nothing here polls.
 */
import type { CollectionHealth, NodeStats, ServiceHealth } from "@stalecast/bindings";
import { useQuery } from "@tanstack/react-query";
import type { ReactNode } from "react";
import { QueryState } from "../components/QueryState";
import { ResourceTable, type Column } from "../components/ResourceTable";
import { formatAge, useNow } from "../lib/time";
import { useTRPC } from "../trpc";

const NODE_COLUMNS: readonly Column[] = [
  { label: "Node" },
  { label: "Polls" },
  { label: "Streams", className: "num" },
  { label: "Notifications/s", className: "num" },
  { label: "Notifications", className: "num" },
  { label: "Writes/s", className: "num" },
  { label: "Delivery p99", className: "num" },
  { label: "Resyncs", className: "num" },
  { label: "Last seen" },
];

const SERVICE_COLUMNS: readonly Column[] = [
  { label: "Service" },
  { label: "Requests/s", className: "num" },
  { label: "Failures", className: "num" },
  { label: "p99", className: "num" },
  { label: "Last answer" },
];

const COLLECTION_COLUMNS: readonly Column[] = [{ label: "Collection" }, { label: "Confirmed" }, { label: "Failed polls", className: "num" }];

/** `1.2 ms`, `—` when nothing was measured. */
function ms(value: number | null): string {
  return value === null ? "—" : `${value < 10 ? value.toFixed(2) : value.toFixed(0)} ms`;
}

export function ServerPage() {
  const trpc = useTRPC();
  const stats = useQuery(trpc.server.stats.queryOptions());
  const now = useNow();
  const data = stats.data;
  return (
    <div className="page">
      <header className="page-header">
        <div>
          <h1>Server</h1>
          <p className="page-header__meta" data-testid="stats-sampled">
            {data && data.sampledAt > 0
              ? `Sampled ${formatAge(data.sampledAt, now)} over ${(data.windowMs / 1000).toFixed(1)} s`
              : "Not sampled yet"}
          </p>
        </div>
      </header>
      <QueryState what="server figures" isPending={stats.isPending} error={stats.error} hasData={data !== undefined} onRetry={() => void stats.refetch()}>
        <Section title="Nodes" testId="stats-nodes" columns={NODE_COLUMNS} rows={data?.nodes.length ?? 0}>
          {data?.nodes.map((node) => <NodeRow key={node.name} node={node} now={now} named={data.nodes.length > 1 || node.name !== "this node"} />)}
        </Section>
        <Section title="Upstream services" testId="stats-services" columns={SERVICE_COLUMNS} rows={data?.services.length ?? 0}>
          {data?.services.map((service) => <ServiceRow key={service.service} service={service} />)}
        </Section>
        <Section title="Collections" testId="stats-collections" columns={COLLECTION_COLUMNS} rows={data?.collections.length ?? 0}>
          {data?.collections.map((collection) => <CollectionRow key={collection.type} collection={collection} now={now} />)}
        </Section>
      </QueryState>
    </div>
  );
}

/** A titled table of the page. */
function Section({ title, testId, columns, rows, children }: { title: string; testId: string; columns: readonly Column[]; rows: number; children: ReactNode }) {
  return (
    <section className="stats-section" aria-label={title}>
      <h2 className="stats-title">{title}</h2>
      <ResourceTable testId={testId} columns={columns} rows={rows}>
        {children}
      </ResourceTable>
    </section>
  );
}

/** One node; `named` when it has a name of its own (a cluster's node), so that the one answering is told apart. */
function NodeRow({ node, now, named }: { node: NodeStats; now: number; named: boolean }) {
  return (
    <tr data-id={node.name} data-polls={node.polls ? "yes" : "no"} aria-current={node.thisNode && named ? "true" : undefined}>
      <td>
        <div className="cell-name">{node.name}</div>
        <div className="cell-id">
          {node.thisNode && named ? "this node · " : ""}v{node.version} · up since {formatAge(node.startedAt, now).replace(" ago", "")}
        </div>
      </td>
      <td>
        {node.polls ? (
          <span className="pill pill--ok" title="yes: this node polls the cloud">polls</span>
        ) : (
          <span className="pill pill--off" title="no: changes reach it through the shared log">standby</span>
        )}
      </td>
      <td className="num mono" data-testid="stat-streams">{node.streams}</td>
      <td className="num mono" data-testid="stat-notifications-rate">{node.notificationsPerSecond.toFixed(1)}</td>
      <td className="num mono" data-testid="stat-notifications-total">{node.notificationsTotal}</td>
      <td className="num mono" data-testid="stat-writes-rate">{node.writesPerSecond.toFixed(1)}</td>
      <td className="num mono" data-testid="stat-delivery-p99">{ms(node.deliveryP99Ms)}</td>
      <td className="num mono">{node.resyncsTotal}</td>
      <td data-testid="stat-last-seen">{formatAge(node.lastSeenAt, now)}</td>
    </tr>
  );
}

function ServiceRow({ service }: { service: ServiceHealth }) {
  const status = service.lastStatus;
  const bad = service.failures > 0 || (status !== null && !/^[1-4]\d\d$/.test(status));
  return (
    <tr data-service={service.service}>
      <td className="mono">{service.service}</td>
      <td className="num mono" data-testid="service-rate">{service.requestsPerSecond.toFixed(1)}</td>
      <td className="num mono">{service.failures}</td>
      <td className="num mono">{ms(service.p99Ms)}</td>
      <td>{status === null ? <span className="muted">not asked yet</span> : <span className={bad ? "pill pill--bad" : "pill pill--ok"}>{status}</span>}</td>
    </tr>
  );
}

function CollectionRow({ collection, now }: { collection: CollectionHealth; now: number }) {
  return (
    <tr data-type={collection.type}>
      <td>
        <span className={`chip chip--${collection.type}`}>{collection.type}</span>
      </td>
      <td>{collection.confirmedAt === null ? <span className="muted">never</span> : formatAge(collection.confirmedAt, now)}</td>
      <td className="num mono">
        {collection.failures > 0 ? <span className="pill pill--bad">{collection.failures}</span> : 0}
      </td>
    </tr>
  );
}
