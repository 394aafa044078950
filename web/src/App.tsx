/**
 * The console's frame, behind the sign-in gate: header with the project filter (the
 * user's projects only), the live badge and the signed-in user with a sign-out,
 * navigation, the page, the event log.
 */
import { ConnectionBadge } from "./components/ConnectionBadge";
import { EventLog } from "./components/EventLog";
import { ProjectOptions } from "./components/ProjectOptions";
import { Sidebar } from "./components/Sidebar";
import { Toasts } from "./components/Toasts";
import { ProjectProvider, useProjectFilter } from "./lib/project";
import { SessionGate, useSession } from "./lib/session";
import { Link, usePath } from "./lib/router";
import { FlavorsPage } from "./pages/FlavorsPage";
import { ImagesPage } from "./pages/ImagesPage";
import { NetworksPage } from "./pages/NetworksPage";
import { ProjectsPage } from "./pages/ProjectsPage";
import { ServerPage } from "./pages/ServerPage";
import { ServersPage } from "./pages/ServersPage";
import { SnapshotsPage } from "./pages/SnapshotsPage";
import { SubnetsPage } from "./pages/SubnetsPage";
import { VolumesPage } from "./pages/VolumesPage";
import { UpdatesProvider } from "./updates/context";

export function App() {
  return (
    <SessionGate>
      {(stream) => (
        <UpdatesProvider options={stream}>
          <ProjectProvider>
            <Shell />
          </ProjectProvider>
        </UpdatesProvider>
      )}
    </SessionGate>
  );
}

function SignedInUser() {
  const { me, signOut, signingOut } = useSession();
  const roles = me.projects.map((p) => `${p.name}: ${p.roles.join(", ")}`).join("\n");
  return (
    <div className="user" data-testid="signed-in-user">
      <span className="user__name" title={roles}>
        {me.user.name}
      </span>
      <button type="button" className="btn btn--small" disabled={signingOut} onClick={signOut}>
        Sign out
      </button>
    </div>
  );
}

function Page({ path }: { path: string }) {
  switch (path) {
    case "/":
    case "/servers":
      return <ServersPage />;
    case "/flavors":
      return <FlavorsPage />;
    case "/volumes":
      return <VolumesPage />;
    case "/snapshots":
      return <SnapshotsPage />;
    case "/images":
      return <ImagesPage />;
    case "/networks":
      return <NetworksPage />;
    case "/subnets":
      return <SubnetsPage />;
    case "/projects":
      return <ProjectsPage />;
    case "/server":
      return <ServerPage />;
    default:
      return (
        <div className="page">
          <h1>Not found</h1>
          <p className="muted">
            There is no page at <span className="mono">{path}</span>. <Link href="/servers">Go to servers</Link>.
          </p>
        </div>
      );
  }
}

function ProjectSelect() {
  const { projectId, setProjectId } = useProjectFilter();
  return (
    <label className="project-select">
      <span>Project</span>
      <select value={projectId ?? ""} onChange={(e) => setProjectId(e.target.value || undefined)} data-testid="project-filter">
        <option value="">All projects</option>
        <ProjectOptions />
      </select>
    </label>
  );
}

function Shell() {
  const path = usePath();
  return (
    <div className="app">
      <header className="topbar">
        <Link href="/servers" className="brand">
          <span className="brand__mark" aria-hidden="true" />
          Stalecast
        </Link>
        <ProjectSelect />
        <div className="topbar__spacer" />
        <ConnectionBadge />
        <SignedInUser />
      </header>
      <Sidebar />
      <main className="main">
        <Page path={path} />
      </main>
      <aside className="aside">
        <EventLog />
      </aside>
      <Toasts />
    </div>
  );
}
