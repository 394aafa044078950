/** A page's title, its count, its "last change" line (from `updates.state`) and its actions. */
import type { UpdateType } from "@stalecast/bindings";
import type { ReactNode } from "react";
import { formatAge, microsToMs, useNow } from "../lib/time";
import { StatusPill } from "./StatusPill";
import { useLastUpdate } from "../updates/useLastUpdate";

interface Props {
  title: string;
  type: UpdateType;
  count?: number;
  /** Statuses to count in the header (`ACTIVE` ×14, `SHUTOFF` ×10). */
  statuses?: readonly string[];
  children?: ReactNode;
}

export function PageHeader({ title, type, count, statuses, children }: Props) {
  const last = useLastUpdate(type);
  const now = useNow();
  return (
    <header className="page-header">
      <div>
        <h1>
          {title}
          {count === undefined ? null : <span className="page-header__count">{count}</span>}
        </h1>
        <p className="page-header__meta" data-testid="last-update">
          {last && last.seq > 0 ? (
            <>
              Last change {formatAge(microsToMs(last.ts), now)} · seq <span className="mono">{last.seq}</span>
            </>
          ) : (
            "No change since the server started"
          )}
        </p>
      </div>
      {statuses && statuses.length > 0 ? <StatusSummary statuses={statuses} /> : null}
      <div className="page-header__actions">{children}</div>
    </header>
  );
}

function StatusSummary({ statuses }: { statuses: readonly string[] }) {
  const counts = new Map<string, number>();
  for (const status of statuses) counts.set(status, (counts.get(status) ?? 0) + 1);
  return (
    <div className="summary" aria-label="By status">
      {[...counts].sort(([, a], [, b]) => b - a).map(([status, n]) => (
        <span key={status} className="summary__item">
          <span className="summary__n">{n}</span>
          <StatusPill status={status} />
        </span>
      ))}
    </div>
  );
}
