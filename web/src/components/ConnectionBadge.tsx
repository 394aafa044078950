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

/** Which tab of this browser holds the one stream they share. */
const ROLE: Record<"holder" | "follower", string> = {
  holder: "This tab holds the stream for this browser's other tabs.",
  follower: "Shared with this browser's other tabs: another tab holds the stream.",
};

export function ConnectionBadge() {
  const { state, role, lastSeq, error } = useUpdates();
  const hint = error && state !== "live" ? `${HINT[state]} (${error})` : HINT[state];
  const title = role === "alone" ? hint : `${hint} ${ROLE[role]}`;
  return (
    <div className="connection" title={title}>
      <span className={`badge badge--${state}`} data-testid="connection-state" data-state={state} data-role={role}>
        <span className="badge__dot" aria-hidden="true" />
        {LABEL[state]}
      </span>
      <span className="connection__seq" data-testid="last-seq">
        seq <span className="mono">{lastSeq ?? "—"}</span>
      </span>
    </div>
  );
}
