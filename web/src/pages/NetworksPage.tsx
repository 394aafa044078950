/** Networks: read-only list. */
import { useQuery } from "@tanstack/react-query";
import { PageHeader } from "../components/PageHeader";
import { QueryState } from "../components/QueryState";
import { ResourceTable, type Column } from "../components/ResourceTable";
import { StatusPill } from "../components/StatusPill";
import { useListInput } from "../lib/project";
import { useProjects } from "../lib/useProjects";
import { useTRPC } from "../trpc";
import { useAutoRefetch } from "../updates/useAutoRefetch";

const NETWORKS_COLUMNS: readonly Column[] = [
  { label: "Name" },
  { label: "Status" },
  { label: "Shared" },
  { label: "Subnets" },
  { label: "Project" },
];

export function NetworksPage() {
  const trpc = useTRPC();
  const networks = useQuery(trpc.networks.list.queryOptions(useListInput()));
  const { names } = useProjects();
  const { changed } = useAutoRefetch("networks");
  const list = networks.data ?? [];
  return (
    <div className="page">
      <PageHeader title="Networks" type="networks" count={networks.data?.length} />
      <QueryState what="networks" isPending={networks.isPending} error={networks.error} hasData={networks.data !== undefined} onRetry={() => void networks.refetch()}>
        <ResourceTable testId="networks-table" columns={NETWORKS_COLUMNS} rows={list.length} empty="No networks here.">
          {list.map((network) => (
            <tr key={network.id} className={changed.has(network.id) ? "row--changed" : undefined} data-id={network.id}>
              <td>
                <div className="cell-name">{network.name}</div>
                <div className="cell-id mono">{network.id}</div>
              </td>
              <td>
                <StatusPill status={network.status} />
              </td>
              <td>{network.shared ? "shared" : <span className="muted">private</span>}</td>
              <td className="mono">{network.subnets.join(", ")}</td>
              <td>{names.get(network.projectId) ?? <span className="mono">{network.projectId}</span>}</td>
            </tr>
          ))}
        </ResourceTable>
      </QueryState>
    </div>
  );
}
