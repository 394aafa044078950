/** One `<option>` per project, for the selects that pick or filter by project. */
import { useProjects } from "../lib/useProjects";

export function ProjectOptions() {
  const { projects } = useProjects();
  return (
    <>
      {(projects.data ?? []).map((p) => (
        <option key={p.id} value={p.id}>
          {p.name}
        </option>
      ))}
    </>
  );
}
