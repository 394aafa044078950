/** Images: read-only list. */
import { useQuery } from "@tanstack/react-query";
import { PageHeader } from "../components/PageHeader";
import { QueryState } from "../components/QueryState";
import { ResourceTable, type Column } from "../components/ResourceTable";
import { StatusPill } from "../components/StatusPill";
import { useListInput } from "../lib/project";
import { formatBytes } from "../lib/time";
import { useProjects } from "../lib/useProjects";
import { useTRPC } from "../trpc";
import { useAutoRefetch } from "../updates/useAutoRefetch";

const IMAGES_COLUMNS: readonly Column[] = [
  { label: "Name" },
  { label: "Status" },
  { label: "Visibility" },
  { label: "Size", className: "num" },
  { label: "Min disk", className: "num" },
  { label: "Owner" },
];

export function ImagesPage() {
  const trpc = useTRPC();
  const images = useQuery(trpc.images.list.queryOptions(useListInput()));
  const { names } = useProjects();
  const { changed } = useAutoRefetch("images");
  const list = images.data ?? [];
  return (
    <div className="page">
      <PageHeader title="Images" type="images" count={images.data?.length} />
      <QueryState what="images" isPending={images.isPending} error={images.error} hasData={images.data !== undefined} onRetry={() => void images.refetch()}>
        <ResourceTable testId="images-table" columns={IMAGES_COLUMNS} rows={list.length} empty="No images here.">
          {list.map((image) => (
            <tr key={image.id} className={changed.has(image.id) ? "row--changed" : undefined} data-id={image.id}>
              <td>
                <div className="cell-name">{image.name}</div>
                <div className="cell-id mono">{image.id}</div>
              </td>
              <td>
                <StatusPill status={image.status} />
              </td>
              <td>{image.visibility}</td>
              <td className="num mono">{formatBytes(image.sizeBytes)}</td>
              <td className="num mono">{image.minDiskGb} GiB</td>
              <td>{image.projectId ? (names.get(image.projectId) ?? image.projectId) : <span className="muted">—</span>}</td>
            </tr>
          ))}
        </ResourceTable>
      </QueryState>
    </div>
  );
}
