/** Navigation, with each collection's last change (from `updates.state`), and the server's own page. */
import type { UpdateType } from "@stalecast/bindings";
import { Link, usePath } from "../lib/router";
import { formatAge, microsToMs, useNow } from "../lib/time";
import { useUpdatesState } from "../updates/useLastUpdate";

export const PAGES: readonly { path: string; label: string; type: UpdateType }[] = [
  { path: "/servers", label: "Servers", type: "servers" },
  { path: "/flavors", label: "Flavors", type: "flavors" },
  { path: "/volumes", label: "Volumes", type: "volumes" },
  { path: "/snapshots", label: "Snapshots", type: "snapshots" },
  { path: "/images", label: "Images", type: "images" },
  { path: "/networks", label: "Networks", type: "networks" },
  { path: "/subnets", label: "Subnets", type: "subnets" },
  { path: "/projects", label: "Projects", type: "projects" },
];

export function Sidebar() {
  const path = usePath();
  const now = useNow();
  const { data } = useUpdatesState();
  return (
    <nav className="sidebar" aria-label="Resources">
      <ul>
        {PAGES.map((page) => {
          const last = data?.types.find((t) => t.type === page.type);
          const active = path === page.path || (path === "/" && page.path === "/servers");
          return (
            <li key={page.path}>
              <Link href={page.path} className={active ? "nav nav--active" : "nav"} aria-current={active ? "page" : undefined}>
                <span className="nav__label">{page.label}</span>
                <span className="nav__age" data-testid={`last-update-${page.type}`}>
                  {last && last.seq > 0 ? formatAge(microsToMs(last.ts), now) : "—"}
                </span>
              </Link>
            </li>
          );
        })}
        <li>
          <Link href="/server" className={path === "/server" ? "nav nav--active" : "nav"} aria-current={path === "/server" ? "page" : undefined}>
            <span className="nav__label">Server</span>
          </Link>
        </li>
      </ul>
      <div className="sidebar__foot">
        <a href="/docs">API explorer</a>
        <a href="/readyz">Readiness</a>
      </div>
    </nav>
  );
}
