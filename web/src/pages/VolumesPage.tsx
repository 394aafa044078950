/**
 * Volumes: one page at a time of the server's paged query (`storage.volumes.page`:
 * search, status filter and sort happen on the server), with the name of the server each
 * is attached to; create, delete. A cloud may hold tens of thousands of volumes: the page
 * holds at most `PAGE_SIZE` of them, whatever the total.
 *
 * The page refetches on every `volumes` update (`UPDATE_QUERY_MAP` invalidates it); the
 * server answers an identical page question once per version of its store, and with
 * `304 Not Modified` when the page did not change, so a change elsewhere costs each tab a
 * few hundred bytes.
 */
import type { Volume } from "@stalecast/bindings";
import { keepPreviousData, useMutation, useQuery } from "@tanstack/react-query";
import { useMemo, useState, type FormEvent } from "react";
import { ConfirmButton } from "../components/ConfirmButton";
import { NewButton } from "../components/NewButton";
import { PageHeader } from "../components/PageHeader";
import { ProjectOptions } from "../components/ProjectOptions";
import type { Column } from "../components/ResourceTable";
import { StatusPill } from "../components/StatusPill";
import { PAGE_SIZE, PagedTable, usePageQuestion, usePageWalk } from "../lib/paging";
import { useListInput, useProjectFilter } from "../lib/project";
import { formatTimestamp } from "../lib/time";
import { useToasts } from "../lib/toasts";
import { useCreateRights, useSession } from "../lib/session";
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

/** The sort orders offered (the server's sort keys; `-` for descending). */
const SORTS: readonly (readonly [string, string])[] = [
  ["-createdAt", "Newest first"],
  ["name", "Name A–Z"],
  ["-name", "Name Z–A"],
  ["createdAt", "Oldest first"],
  ["-sizeGb", "Largest first"],
  ["status", "Status"],
];

const STATUSES = ["available", "in-use", "creating", "error", "deleting"];

export function VolumesPage() {
  const trpc = useTRPC();
  const listInput = useListInput();
  // Newest first: a volume just created, here or elsewhere, shows at the top.
  const { question, toolbar } = usePageQuestion("-createdAt");
  // The pages walked through so far, for this question.
  const walk = usePageWalk(question);
  const cursor = walk.cursor;
  const volumes = useQuery(
    trpc.storage.volumes.page.queryOptions(
      { ...question, limit: PAGE_SIZE, ...(cursor ? { cursor } : {}) },
      { placeholderData: keepPreviousData },
    ),
  );
  // Attachments name servers by id: show their names (the same query as the servers page).
  const servers = useQuery(trpc.compute.servers.list.queryOptions(listInput));
  const serverNames = useMemo(() => new Map((servers.data ?? []).map((s) => [s.id, s.name])), [servers.data]);
  const { names } = useProjects();
  const { changed } = useAutoRefetch("volumes");
  const [creating, setCreating] = useState(false);
  const page = volumes.data;

  return (
    <div className="page">
      <PageHeader title="Volumes" type="volumes" count={page?.total} statuses={page?.items.map((r) => r.status)}>
        <NewButton noun="volume" open={creating} onToggle={() => setCreating((c) => !c)} />
      </PageHeader>
      {creating ? <CreateVolume onDone={() => setCreating(false)} /> : null}
      <PagedTable
        what="volumes"
        statuses={STATUSES}
        sorts={SORTS}
        toolbar={toolbar}
        walk={walk}
        query={volumes}
        columns={VOLUMES_COLUMNS}
        testId="volumes-table"
        empty="No volumes here yet."
        rows={(items) =>
          items.map((volume) => (
            <VolumeRow
              key={volume.id}
              volume={volume}
              project={names.get(volume.projectId)}
              server={volume.attachedTo ? serverNames.get(volume.attachedTo) : undefined}
              changed={changed.has(volume.id)}
            />
          ))
        }
      />
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
  const readOnly = useSession().whyReadOnly(volume.projectId);
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
          disabled={attached || readOnly !== null}
          title={readOnly ?? (attached ? "Attached volumes cannot be deleted" : undefined)}
          onConfirm={() => remove.mutate({ id: volume.id })}
        />
      </td>
    </tr>
  );
}

function CreateVolume({ onDone }: { onDone(): void }) {
  const trpc = useTRPC();
  const toasts = useToasts();
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
  const { writable } = useCreateRights();
  const project = projectId || writable.find((w) => w.id === filtered)?.id || writable[0]?.id || "";
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
          <ProjectOptions writable />
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
