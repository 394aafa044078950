/**
 * One `<option>` per project the user has a role on, for the selects that pick or filter
 * by project; `writable`: only those where they may create things.
 */
import { useCreateRights } from "../lib/session";
import { useProjects } from "../lib/useProjects";

export function ProjectOptions({ writable = false }: { writable?: boolean }) {
  const { projects } = useProjects();
  const rights = useCreateRights();
  const shown = (projects.data ?? []).filter((p) => !writable || rights.writable.some((w) => w.id === p.id));
  return (
    <>
      {shown.map((p) => (
        <option key={p.id} value={p.id}>
          {p.name}
        </option>
      ))}
    </>
  );
}
