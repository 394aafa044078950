/** Volumes: list (with the name of the server each is attached to), create, delete. */
import type { Volume } from "@stalecast/bindings";
import { useMutation, useQuery } from "@tanstack/react-query";
import { useMemo, useState, type FormEvent } from "react";
import { ConfirmButton } from "../components/ConfirmButton";
import { PageHeader } from "../components/PageHeader";
import { ProjectOptions } from "../components/ProjectOptions";
import { QueryState } from "../components/QueryState";
import { ResourceTable, type Column } from "../components/ResourceTable";
import { StatusPill } from "../components/StatusPill";
import { useListInput, useProjectFilter } from "../lib/project";
import { formatTimestamp } from "../lib/time";
import { useToasts } from "../lib/toasts";
import { useProjects } from "../lib/useProjects";
import { useTRPC } from "../trpc";
import { useAutoRefetch } from "../updates/useAutoRefetch";

const VOLUMES_COLUMNS: readonly Column[] = [
  { label: "Name" },
  { label: "Status" },
  { label: "Size", className: "num" },
  { label: "Attached to" },
  { label: "Project" },
  { label: "Created" },
  { label: "Actions", className: "table__actions" },
];

export function VolumesPage() {
  const trpc = useTRPC();
  const input = useListInput();
  const volumes = useQuery(trpc.storage.volumes.list.queryOptions(input));
  // Attachments name servers by id: show their names (the same query as the servers page).
  const servers = useQuery(trpc.compute.servers.list.queryOptions(input));
  const serverNames = useMemo(() => new Map((servers.data ?? []).map((s) => [s.id, s.name])), [servers.data]);
  const { names } = useProjects();
  const { changed } = useAutoRefetch("volumes");
  const [creating, setCreating] = useState(false);
  const list = volumes.data ?? [];
  const total = list.reduce((sum, v) => sum + v.sizeGb, 0);

  return (
    <div className="page">
      <PageHeader title="Volumes" type="volumes" count={volumes.data?.length} statuses={list.map((r) => r.status)}>
        {volumes.data ? <span className="muted">{total} GiB</span> : null}
        <button type="button" className="btn btn--primary" onClick={() => setCreating((c) => !c)}>
          {creating ? "Close" : "New volume"}
        </button>
      </PageHeader>
      {creating ? <CreateVolume onDone={() => setCreating(false)} /> : null}
      <QueryState
        what="volumes"
        isPending={volumes.isPending}
        error={volumes.error}
        hasData={volumes.data !== undefined}
        onRetry={() => void volumes.refetch()}
      >
        <ResourceTable testId="volumes-table" columns={VOLUMES_COLUMNS} rows={list.length} empty="No volumes here yet.">
          {list.map((volume) => (
            <VolumeRow
              key={volume.id}
              volume={volume}
              project={names.get(volume.projectId)}
              server={volume.attachedTo ? serverNames.get(volume.attachedTo) : undefined}
              changed={changed.has(volume.id)}
            />
          ))}
        </ResourceTable>
      </QueryState>
    </div>
  );
}

function VolumeRow({
  volume,
  project,
  server,
  changed,
}: {
  volume: Volume;
  project?: string;
  /** The name of the server it is attached to, once known. */
  server?: string;
  changed: boolean;
}) {
  const trpc = useTRPC();
  const remove = useMutation(trpc.storage.volumes.delete.mutationOptions());
  const attached = volume.attachedTo !== null && volume.attachedTo !== undefined;
  return (
    <tr className={changed ? "row--changed" : undefined} data-id={volume.id} data-name={volume.name}>
      <td>
        <div className="cell-name">{volume.name || <span className="muted">unnamed</span>}</div>
        <div className="cell-id mono">{volume.id}</div>
      </td>
      <td>
        <StatusPill status={volume.status} />
      </td>
      <td className="num mono">{volume.sizeGb} GiB</td>
      <td data-testid="attached-to">
        {volume.attachedTo ? (
          <>
            {server ? <div className="cell-name">{server}</div> : null}
            <div className="cell-id mono">{volume.attachedTo}</div>
          </>
        ) : (
          <span className="muted">—</span>
        )}
      </td>
      <td>{project ?? <span className="mono">{volume.projectId}</span>}</td>
      <td className="muted">{formatTimestamp(volume.createdAt)}</td>
      <td className="table__actions">
        <ConfirmButton
          label="Delete"
          busy={remove.isPending}
          disabled={attached}
          title={attached ? "Attached volumes cannot be deleted" : undefined}
          onConfirm={() => remove.mutate({ id: volume.id })}
        />
      </td>
    </tr>
  );
}

function CreateVolume({ onDone }: { onDone(): void }) {
  const trpc = useTRPC();
  const toasts = useToasts();
  const { projects } = useProjects();
  const { projectId: filtered } = useProjectFilter();
  const [name, setName] = useState("");
  const [size, setSize] = useState("10");
  const [projectId, setProjectId] = useState(filtered ?? "");
  const [description, setDescription] = useState("");
  const create = useMutation(
    trpc.storage.volumes.create.mutationOptions({
      onSuccess: (volume) => {
        toasts.push({ tone: "ok", title: `Volume ${volume.name} created`, detail: `${volume.id} · ${volume.status}` });
        onDone();
      },
    }),
  );
  const project = projectId || projects.data?.[0]?.id || "";
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({
      projectId: project,
      name,
      sizeGb: Number(size),
      ...(description ? { description } : {}),
    });
  };
  return (
    <form className="form" onSubmit={submit} aria-label="New volume">
      <label>
        Name
        <input name="name" value={name} onChange={(e) => setName(e.target.value)} required maxLength={255} placeholder="scratch-01" />
      </label>
      <label className="form__narrow">
        Size (GiB)
        <input name="sizeGb" type="number" min={1} max={16384} value={size} onChange={(e) => setSize(e.target.value)} required />
      </label>
      <label>
        Project
        <select name="projectId" value={project} onChange={(e) => setProjectId(e.target.value)}>
          <ProjectOptions />
        </select>
      </label>
      <label className="form__wide">
        Description
        <input name="description" value={description} onChange={(e) => setDescription(e.target.value)} maxLength={1024} placeholder="optional" />
      </label>
      <button type="submit" className="btn btn--primary" disabled={create.isPending || !project}>
        {create.isPending ? "Creating…" : "Create volume"}
      </button>
    </form>
  );
}
