/** A resource's status, coloured by what it means rather than by its spelling. */
const TONE: Record<string, string> = {
  active: "ok",
  available: "ok",
  "in-use": "info",
  build: "busy",
  creating: "busy",
  deleting: "busy",
  saving: "busy",
  queued: "busy",
  shutoff: "off",
  down: "off",
  error: "bad",
  error_deleting: "bad",
};

export function StatusPill({ status }: { status: string }) {
  const tone = TONE[status.toLowerCase()] ?? "off";
  return (
    <span className={`pill pill--${tone}`} data-status={status}>
      {status}
    </span>
  );
}
