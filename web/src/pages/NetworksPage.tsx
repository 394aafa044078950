/** Networks: read-only list. */
import { useQuery } from "@tanstack/react-query";
import { PageHeader } from "../components/PageHeader";
import { QueryState } from "../components/QueryState";
import { StatusPill } from "../components/StatusPill";
import { useListInput } from "../lib/project";
import { useProjects } from "../lib/useProjects";
import { useTRPC } from "../trpc";
import { useAutoRefetch } from "../updates/useAutoRefetch";

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
        <div className="table-wrap">
          <table className="table" data-testid="networks-table">
            <thead>
              <tr>
                <th>Name</th>
                <th>Status</th>
                <th>Shared</th>
                <th>Subnets</th>
                <th>Project</th>
              </tr>
            </thead>
            <tbody>
              {list.length === 0 ? (
                <tr>
                  <td colSpan={5} className="table__empty">
                    No networks here.
                  </td>
                </tr>
              ) : (
                list.map((network) => (
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
                ))
              )}
            </tbody>
          </table>
        </div>
      </QueryState>
    </div>
  );
}
