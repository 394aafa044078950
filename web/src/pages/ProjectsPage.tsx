/** Projects: read-only list. */
import { PageHeader } from "../components/PageHeader";
import { QueryState } from "../components/QueryState";
import { ResourceTable, type Column } from "../components/ResourceTable";
import { useProjectFilter } from "../lib/project";
import { useProjects } from "../lib/useProjects";
import { useAutoRefetch } from "../updates/useAutoRefetch";

const PROJECTS_COLUMNS: readonly Column[] = [
  { label: "Name" },
  { label: "Description" },
  { label: "State" },
  { label: "Filter", className: "table__actions" },
];

export function ProjectsPage() {
  const { projects } = useProjects();
  const { projectId, setProjectId } = useProjectFilter();
  const { changed } = useAutoRefetch("projects");
  const list = projects.data ?? [];
  return (
    <div className="page">
      <PageHeader title="Projects" type="projects" count={projects.data?.length} />
      <QueryState what="projects" isPending={projects.isPending} error={projects.error} hasData={projects.data !== undefined} onRetry={() => void projects.refetch()}>
        <ResourceTable testId="projects-table" columns={PROJECTS_COLUMNS} rows={list.length}>
          {list.map((project) => (
            <tr key={project.id} className={changed.has(project.id) ? "row--changed" : undefined} data-id={project.id}>
              <td>
                <div className="cell-name">{project.name}</div>
                <div className="cell-id mono">{project.id}</div>
              </td>
              <td>{project.description}</td>
              <td>{project.enabled ? <span className="pill pill--ok">enabled</span> : <span className="pill pill--off">disabled</span>}</td>
              <td className="table__actions">
                <button
                  type="button"
                  className="btn btn--small"
                  onClick={() => setProjectId(projectId === project.id ? undefined : project.id)}
                >
                  {projectId === project.id ? "Show all" : "Only this"}
                </button>
              </td>
            </tr>
          ))}
        </ResourceTable>
      </QueryState>
    </div>
  );
}
