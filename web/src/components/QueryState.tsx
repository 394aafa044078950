/** What a list shows while it loads, when it failed, and when it is empty. */
import type { ReactNode } from "react";
import { describeError } from "../lib/errors";

interface Props {
  isPending: boolean;
  error: unknown;
  /** Data from an earlier answer, still shown when a refetch failed. */
  hasData: boolean;
  what: string;
  onRetry(): void;
  children: ReactNode;
}

export function QueryState({ isPending, error, hasData, what, onRetry, children }: Props) {
  if (error && !hasData) {
    const d = describeError(error);
    return (
      <div className="alert alert--error" role="alert" data-testid="query-error">
        <div>
          <strong>Could not load {what}</strong> <span className="mono">{d.code}{d.status ? ` ${d.status}` : ""}</span>
          <p>{d.message}</p>
        </div>
        <button type="button" className="btn" onClick={onRetry}>
          Retry
        </button>
      </div>
    );
  }
  if (isPending) {
    return (
      <div className="loading" aria-busy="true">
        Loading {what}…
      </div>
    );
  }
  return (
    <>
      {error ? (
        <div className="alert alert--warn" role="alert" data-testid="query-error">
          <div>
            <strong>Showing the last {what} received.</strong> Refreshing failed: {describeError(error).message}
          </div>
          <button type="button" className="btn" onClick={onRetry}>
            Retry
          </button>
        </div>
      ) : null}
      {children}
    </>
  );
}
