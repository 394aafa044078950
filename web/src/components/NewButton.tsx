/**
 * The "New …" button of a page's header, which opens its create form: disabled, with the
 * reason beside it, when the signed-in user may create nothing (a reader everywhere).
 */
import { useCreateRights } from "../lib/session";

export function NewButton({ noun, open, onToggle }: { noun: string; open: boolean; onToggle(): void }) {
  const { whyNot } = useCreateRights();
  return (
    <>
      <button
        type="button"
        className="btn btn--primary"
        disabled={whyNot !== null}
        title={whyNot ?? undefined}
        data-testid={`new-${noun}`}
        onClick={onToggle}
      >
        {open ? "Close" : `New ${noun}`}
      </button>
      {whyNot ? (
        <span className="muted readonly-reason" data-testid="readonly-reason">
          {whyNot}
        </span>
      ) : null}
    </>
  );
}
