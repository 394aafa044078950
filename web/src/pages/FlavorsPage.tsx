/** Flavors: the cloud's public flavors, read-only (making flavors is an administrator's job). */
import { useQuery } from "@tanstack/react-query";
import { PageHeader } from "../components/PageHeader";
import { QueryState } from "../components/QueryState";
import { ResourceTable, type Column } from "../components/ResourceTable";
import { useTRPC } from "../trpc";
import { useAutoRefetch } from "../updates/useAutoRefetch";

const FLAVORS_COLUMNS: readonly Column[] = [
  { label: "Name" },
  { label: "vCPUs", className: "num" },
  { label: "RAM", className: "num" },
  { label: "Disk", className: "num" },
  { label: "Ephemeral", className: "num" },
  { label: "State" },
];

/** `2048` MiB as `2 GiB`, `512` as `512 MiB`. */
function memory(mib: number): string {
  return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

export function FlavorsPage() {
  const trpc = useTRPC();
  // Flavors are the whole cloud's: no project filter applies.
  const flavors = useQuery(trpc.compute.flavors.list.queryOptions());
  const { changed } = useAutoRefetch("flavors");
  const list = [...(flavors.data ?? [])].sort((a, b) => a.vcpus - b.vcpus || a.ramMb - b.ramMb || a.name.localeCompare(b.name));
  return (
    <div className="page">
      <PageHeader title="Flavors" type="flavors" count={flavors.data?.length} />
      <QueryState what="flavors" isPending={flavors.isPending} error={flavors.error} hasData={flavors.data !== undefined} onRetry={() => void flavors.refetch()}>
        <ResourceTable testId="flavors-table" columns={FLAVORS_COLUMNS} rows={list.length} empty="No flavors.">
          {list.map((flavor) => (
            <tr key={flavor.id} className={changed.has(flavor.id) ? "row--changed" : undefined} data-id={flavor.id}>
              <td>
                <div className="cell-name">{flavor.name}</div>
                <div className="cell-id mono">{flavor.id}</div>
              </td>
              <td className="num mono">{flavor.vcpus}</td>
              <td className="num mono">{memory(flavor.ramMb)}</td>
              <td className="num mono">{flavor.diskGb} GiB</td>
              <td className="num mono">{flavor.ephemeralGb ? `${flavor.ephemeralGb} GiB` : "—"}</td>
              <td>{flavor.disabled ? <span className="muted">disabled</span> : "enabled"}</td>
            </tr>
          ))}
        </ResourceTable>
      </QueryState>
    </div>
  );
}
