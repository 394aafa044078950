/** The last notifications the stream delivered: type, ids, age. */
import { formatAge, microsToMs, useNow } from "../lib/time";
import { useUpdates } from "../updates/context";

const SHOWN_IDS = 3;

export function EventLog() {
  const { events, state } = useUpdates();
  const now = useNow();
  return (
    <section className="eventlog" aria-label="Event log">
      <header className="panel-title">
        <h2>Event log</h2>
        <span className="muted">{events.length ? `last ${events.length}` : ""}</span>
      </header>
      {events.length === 0 ? (
        <p className="eventlog__empty">
          {state === "live"
            ? "Listening. Changes in the cloud — yours or anyone's — show up here."
            : "Waiting for the update stream…"}
        </p>
      ) : (
        <ol className="eventlog__list" data-testid="event-log">
          {events.map(({ n, event, receivedAt }) =>
            event.kind === "update" ? (
              <li key={n} className="eventlog__item" data-type={event.type}>
                <span className={`chip chip--${event.type}`}>{event.type}</span>
                <span className="eventlog__ids mono" title={event.ids?.join(", ") ?? "the whole collection"}>
                  {event.ids
                    ? event.ids.slice(0, SHOWN_IDS).join(" ") +
                      (event.ids.length > SHOWN_IDS ? ` +${event.ids.length - SHOWN_IDS}` : "")
                    : "all"}
                </span>
                <span className="eventlog__age" title={`seq ${event.seq}`}>
                  {formatAge(microsToMs(event.ts), now)}
                </span>
              </li>
            ) : (
              <li key={n} className="eventlog__item eventlog__item--resync">
                <span className="chip chip--resync">resync</span>
                <span className="eventlog__ids">
                  {event.reason === "gap" ? "missed updates: refetched all" : "fell behind: refetched all"}
                </span>
                <span className="eventlog__age">{formatAge(receivedAt, now)}</span>
              </li>
            ),
          )}
        </ol>
      )}
    </section>
  );
}
