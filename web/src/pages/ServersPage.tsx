/** Servers: list, create, start, stop, delete. */
import type { Server } from "@stalecast/bindings";
import { useMutation, useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { ConfirmButton } from "../components/ConfirmButton";
import { NewButton } from "../components/NewButton";
import { PageHeader } from "../components/PageHeader";
import { ProjectOptions } from "../components/ProjectOptions";
import { QueryState } from "../components/QueryState";
import { ResourceTable, type Column } from "../components/ResourceTable";
import { StatusPill } from "../components/StatusPill";
import { useListInput, useProjectFilter } from "../lib/project";
import { formatTimestamp } from "../lib/time";
import { useToasts } from "../lib/toasts";
import { useCreateRights, useSession } from "../lib/session";
import { useProjects } from "../lib/useProjects";
import { useTRPC } from "../trpc";
import { useAutoRefetch } from "../updates/useAutoRefetch";

const SERVERS_COLUMNS: readonly Column[] = [
  { label: "Name" },
  { label: "Status" },
  { label: "Flavor" },
  { label: "Addresses" },
  { label: "Project" },
  { label: "Updated" },
  { label: "Actions", className: "table__actions" },
];

export function ServersPage() {
  const trpc = useTRPC();
  const input = useListInput();
  const servers = useQuery(trpc.compute.servers.list.queryOptions(input));
  const { names } = useProjects();
  const { changed } = useAutoRefetch("servers");
  const [creating, setCreating] = useState(false);
  const list = servers.data ?? [];

  return (
    <div className="page">
      <PageHeader title="Servers" type="servers" count={servers.data?.length} statuses={list.map((r) => r.status)}>
        <NewButton noun="server" open={creating} onToggle={() => setCreating((c) => !c)} />
      </PageHeader>
      {creating ? <CreateServer onDone={() => setCreating(false)} /> : null}
      <QueryState
        what="servers"
        isPending={servers.isPending}
        error={servers.error}
        hasData={servers.data !== undefined}
        onRetry={() => void servers.refetch()}
      >
        <ResourceTable testId="servers-table" columns={SERVERS_COLUMNS} rows={list.length} empty="No servers here yet.">
          {list.map((server) => (
            <ServerRow key={server.id} server={server} project={names.get(server.projectId)} changed={changed.has(server.id)} />
          ))}
        </ResourceTable>
      </QueryState>
    </div>
  );
}

function ServerRow({ server, project, changed }: { server: Server; project?: string; changed: boolean }) {
  const trpc = useTRPC();
  const start = useMutation(trpc.compute.servers.start.mutationOptions());
  const stop = useMutation(trpc.compute.servers.stop.mutationOptions());
  const remove = useMutation(trpc.compute.servers.delete.mutationOptions());
  const readOnly = useSession().whyReadOnly(server.projectId);
  const busy = start.isPending || stop.isPending || remove.isPending;
  return (
    <tr className={changed ? "row--changed" : undefined} data-id={server.id} data-name={server.name}>
      <td>
        <div className="cell-name">{server.name}</div>
        <div className="cell-id mono">{server.id}</div>
      </td>
      <td>
        <StatusPill status={server.status} />
      </td>
      <td className="mono">{server.flavor}</td>
      <td className="mono">
        {server.addresses.map((a) => (
          <div key={`${a.network}-${a.addr}`} title={a.network}>
            {a.addr}
          </div>
        ))}
      </td>
      <td>{project ?? <span className="mono">{server.projectId}</span>}</td>
      <td className="muted">{formatTimestamp(server.updated)}</td>
      <td className="table__actions">
        {server.status === "SHUTOFF" ? (
          <button
            type="button"
            className="btn btn--small"
            disabled={busy || readOnly !== null}
            title={readOnly ?? undefined}
            onClick={() => start.mutate({ id: server.id })}
          >
            {start.isPending ? "Starting…" : "Start"}
          </button>
        ) : (
          <button
            type="button"
            className="btn btn--small"
            disabled={busy || server.status !== "ACTIVE" || readOnly !== null}
            title={readOnly ?? undefined}
            onClick={() => stop.mutate({ id: server.id })}
          >
            {stop.isPending ? "Stopping…" : "Stop"}
          </button>
        )}
        <ConfirmButton
          label="Delete"
          busy={remove.isPending}
          disabled={busy || readOnly !== null}
          title={readOnly ?? undefined}
          onConfirm={() => remove.mutate({ id: server.id })}
        />
      </td>
    </tr>
  );
}

const FLAVORS = ["m1.small", "m1.medium", "m1.large", "c1.xlarge"];

function CreateServer({ onDone }: { onDone(): void }) {
  const trpc = useTRPC();
  const toasts = useToasts();
  const { projectId: filtered } = useProjectFilter();
  const images = useQuery(trpc.images.list.queryOptions({}));
  const [name, setName] = useState("");
  const [projectId, setProjectId] = useState(filtered ?? "");
  const [flavor, setFlavor] = useState("m1.small");
  const [imageId, setImageId] = useState("");
  const create = useMutation(
    trpc.compute.servers.create.mutationOptions({
      onSuccess: (server) => {
        toasts.push({ tone: "ok", title: `Server ${server.name} created`, detail: `${server.id} · ${server.status}` });
        onDone();
      },
    }),
  );
  const { writable } = useCreateRights();
  const project = projectId || writable.find((w) => w.id === filtered)?.id || writable[0]?.id || "";
  // Nova boots a server from an image (or from a volume, which this form does not make).
  const image = imageId || images.data?.[0]?.id || "";
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({ projectId: project, name, flavor, imageId: image });
  };
  return (
    <form className="form" onSubmit={submit} aria-label="New server">
      <label>
        Name
        <input name="name" value={name} onChange={(e) => setName(e.target.value)} required maxLength={255} placeholder="web-42" />
      </label>
      <label>
        Project
        <select name="projectId" value={project} onChange={(e) => setProjectId(e.target.value)}>
          <ProjectOptions writable />
        </select>
      </label>
      <label>
        Flavor
        <select name="flavor" value={flavor} onChange={(e) => setFlavor(e.target.value)}>
          {FLAVORS.map((f) => (
            <option key={f}>{f}</option>
          ))}
        </select>
      </label>
      <label>
        Image
        <select name="imageId" value={image} onChange={(e) => setImageId(e.target.value)}>
          {(images.data ?? []).map((i) => (
            <option key={i.id} value={i.id}>
              {i.name}
            </option>
          ))}
        </select>
      </label>
      <button type="submit" className="btn btn--primary" disabled={create.isPending || !project || !image}>
        {create.isPending ? "Creating…" : "Create server"}
      </button>
    </form>
  );
}
