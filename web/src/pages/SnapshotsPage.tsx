/**
 * Volume snapshots: one page at a time of `storage.snapshots.page` (search, status filter
 * and sort on the server), with the name of each one's volume; snapshot a volume, delete.
 * Live like every table: each `snapshots` update invalidates the page (`UPDATE_QUERY_MAP`).
 */
import type { VolumeSnapshot } from "@stalecast/bindings";
import { keepPreviousData, useMutation, useQuery } from "@tanstack/react-query";
import { useMemo, useState, type FormEvent } from "react";
import { ConfirmButton } from "../components/ConfirmButton";
import { NewButton } from "../components/NewButton";
import { PageHeader } from "../components/PageHeader";
import type { Column } from "../components/ResourceTable";
import { StatusPill } from "../components/StatusPill";
import { PAGE_SIZE, PagedTable, usePageQuestion, usePageWalk } from "../lib/paging";
import { useListInput } from "../lib/project";
import { useSession } from "../lib/session";
import { formatTimestamp } from "../lib/time";
import { useToasts } from "../lib/toasts";
import { useProjects } from "../lib/useProjects";
import { useTRPC } from "../trpc";
import { useAutoRefetch } from "../updates/useAutoRefetch";

const SNAPSHOTS_COLUMNS: readonly Column[] = [
  { label: "Name" },
  { label: "Status" },
  { label: "Size", className: "num" },
  { label: "Volume" },
  { label: "Project" },
  { label: "Created" },
  { label: "Actions", className: "table__actions" },
];

const SORTS: readonly (readonly [string, string])[] = [
  ["-createdAt", "Newest first"],
  ["name", "Name A–Z"],
  ["-name", "Name Z–A"],
  ["createdAt", "Oldest first"],
  ["-sizeGb", "Largest first"],
  ["status", "Status"],
];

const STATUSES = ["available", "creating", "deleting", "error"];

/** The volumes offered to snapshot: the first of those Cinder takes (available, or in use with force). */
const VOLUME_CHOICES = 200;

export function SnapshotsPage() {
  const trpc = useTRPC();
  const { question, toolbar } = usePageQuestion("-createdAt");
  const walk = usePageWalk(question);
  const snapshots = useQuery(
    trpc.storage.snapshots.page.queryOptions(
      { ...question, limit: PAGE_SIZE, ...(walk.cursor ? { cursor: walk.cursor } : {}) },
      { placeholderData: keepPreviousData },
    ),
  );
  const { names } = useProjects();
  const { changed } = useAutoRefetch("snapshots");
  const [creating, setCreating] = useState(false);
  const page = snapshots.data;
  return (
    <div className="page">
      <PageHeader title="Snapshots" type="snapshots" count={page?.total} statuses={page?.items.map((r) => r.status)}>
        <NewButton noun="snapshot" open={creating} onToggle={() => setCreating((c) => !c)} />
      </PageHeader>
      {creating ? <CreateSnapshot onDone={() => setCreating(false)} /> : null}
      <PagedTable
        what="snapshots"
        statuses={STATUSES}
        sorts={SORTS}
        toolbar={toolbar}
        walk={walk}
        query={snapshots}
        columns={SNAPSHOTS_COLUMNS}
        testId="snapshots-table"
        empty="No snapshots here yet."
        rows={(items) =>
          items.map((snapshot) => (
            <SnapshotRow key={snapshot.id} snapshot={snapshot} project={names.get(snapshot.projectId)} changed={changed.has(snapshot.id)} />
          ))
        }
      />
    </div>
  );
}

function SnapshotRow({ snapshot, project, changed }: { snapshot: VolumeSnapshot; project?: string; changed: boolean }) {
  const trpc = useTRPC();
  const remove = useMutation(trpc.storage.snapshots.delete.mutationOptions());
  const busy = snapshot.status !== "available" && snapshot.status !== "error";
  const readOnly = useSession().whyReadOnly(snapshot.projectId);
  return (
    <tr className={changed ? "row--changed" : undefined} data-id={snapshot.id} data-name={snapshot.name}>
      <td>
        <div className="cell-name">{snapshot.name || <span className="muted">unnamed</span>}</div>
        <div className="cell-id mono">{snapshot.id}</div>
      </td>
      <td>
        <StatusPill status={snapshot.status} />
      </td>
      <td className="num mono">{snapshot.sizeGb} GiB</td>
      <td className="cell-id mono">{snapshot.volumeId}</td>
      <td>{project ?? <span className="mono">{snapshot.projectId}</span>}</td>
      <td className="muted">{formatTimestamp(snapshot.createdAt)}</td>
      <td className="table__actions">
        <ConfirmButton
          label="Delete"
          busy={remove.isPending}
          disabled={busy || readOnly !== null}
          title={readOnly ?? (busy ? "Only an available or failed snapshot can be deleted" : undefined)}
          onConfirm={() => remove.mutate({ id: snapshot.id })}
        />
      </td>
    </tr>
  );
}

function CreateSnapshot({ onDone }: { onDone(): void }) {
  const trpc = useTRPC();
  const toasts = useToasts();
  const listInput = useListInput();
  // Cinder snapshots an available volume, or one in use when forced.
  const available = useQuery(
    trpc.storage.volumes.page.queryOptions({ ...listInput, status: "available", sort: "name", limit: VOLUME_CHOICES }),
  );
  const inUse = useQuery(trpc.storage.volumes.page.queryOptions({ ...listInput, status: "in-use", sort: "name", limit: VOLUME_CHOICES }));
  const volumes = useMemo(
    () => [...(available.data?.items ?? []), ...(inUse.data?.items ?? [])],
    [available.data, inUse.data],
  );
  const [volumeId, setVolumeId] = useState("");
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const volume = volumes.find((v) => v.id === volumeId) ?? volumes[0];
  const create = useMutation(
    trpc.storage.snapshots.create.mutationOptions({
      onSuccess: (snapshot) => {
        toasts.push({ tone: "ok", title: `Snapshot ${snapshot.name} created`, detail: `${snapshot.id} · ${snapshot.status}` });
        onDone();
      },
    }),
  );
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (!volume) return;
    create.mutate({
      volumeId: volume.id,
      name,
      ...(description ? { description } : {}),
      ...(volume.status === "in-use" ? { force: true } : {}),
    });
  };
  return (
    <form className="form" onSubmit={submit} aria-label="New snapshot">
      <label>
        Volume
        <select name="volumeId" value={volume?.id ?? ""} onChange={(e) => setVolumeId(e.target.value)}>
          {volumes.map((v) => (
            <option key={v.id} value={v.id}>
              {v.name || v.id} ({v.sizeGb} GiB, {v.status})
            </option>
          ))}
        </select>
      </label>
      <label>
        Name
        <input name="name" value={name} onChange={(e) => setName(e.target.value)} required maxLength={255} placeholder="before-upgrade" />
      </label>
      <label className="form__wide">
        Description
        <input name="description" value={description} onChange={(e) => setDescription(e.target.value)} maxLength={1024} placeholder="optional" />
      </label>
      <button type="submit" className="btn btn--primary" disabled={create.isPending || !volume}>
        {create.isPending ? "Creating…" : "Create snapshot"}
      </button>
    </form>
  );
}
