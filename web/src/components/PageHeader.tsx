/** A page's title, its count, its "last change" line (from `updates.state`) and its actions. */
import type { UpdateType } from "@stalecast/bindings";
import type { ReactNode } from "react";
import { formatAge, microsToMs, useNow } from "../lib/time";
import { useLastUpdate } from "../updates/useLastUpdate";

interface Props {
  title: string;
  type: UpdateType;
  count?: number;
  children?: ReactNode;
}

export function PageHeader({ title, type, count, children }: Props) {
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
      <div className="page-header__actions">{children}</div>
    </header>
  );
}
