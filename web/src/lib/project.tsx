/** The project the lists are narrowed to (none: every project), chosen in the header. */
import { createContext, useContext, useMemo, useState, type ReactNode } from "react";

interface ProjectFilter {
  projectId: string | undefined;
  setProjectId(id: string | undefined): void;
}

const ProjectContext = createContext<ProjectFilter | null>(null);

export function ProjectProvider({ children }: { children: ReactNode }) {
  const [projectId, setProjectId] = useState<string | undefined>(undefined);
  const value = useMemo(() => ({ projectId, setProjectId }), [projectId]);
  return <ProjectContext.Provider value={value}>{children}</ProjectContext.Provider>;
}

export function useProjectFilter(): ProjectFilter {
  const filter = useContext(ProjectContext);
  if (!filter) throw new Error("useProjectFilter() needs a <ProjectProvider>");
  return filter;
}

/** The list input for the chosen project: `{}` (all) or `{ projectId }`. */
export function useListInput(): { projectId?: string } {
  const { projectId } = useProjectFilter();
  return useMemo(() => (projectId ? { projectId } : {}), [projectId]);
}
