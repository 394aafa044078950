/** The header's live indicator: is the update stream connected, and how far it got. */
import { useUpdates } from "../updates/context";
import type { ConnectionState } from "../updates/useSSEUpdates";

const LABEL: Record<ConnectionState, string> = {
  connecting: "Connecting",
  live: "Live",
  reconnecting: "Reconnecting",
};

const HINT: Record<ConnectionState, string> = {
  connecting: "Opening the update stream…",
  live: "Update stream connected: lists refresh the moment the cloud changes.",
  reconnecting: "Update stream lost; retrying. The lists may be out of date until it is back.",
};

export function ConnectionBadge() {
  const { state, lastSeq, error } = useUpdates();
  const title = error && state !== "live" ? `${HINT[state]} (${error})` : HINT[state];
  return (
    <div className="connection" title={title}>
      <span className={`badge badge--${state}`} data-testid="connection-state" data-state={state}>
        <span className="badge__dot" aria-hidden="true" />
        {LABEL[state]}
      </span>
      <span className="connection__seq" data-testid="last-seq">
        seq <span className="mono">{lastSeq ?? "—"}</span>
      </span>
    </div>
  );
}
