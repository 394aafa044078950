/** A destructive button that asks once more inline instead of through a modal dialog. */
import { useEffect, useState } from "react";

interface Props {
  label: string;
  confirmLabel?: string;
  disabled?: boolean;
  busy?: boolean;
  title?: string;
  onConfirm(): void;
}

export function ConfirmButton({ label, confirmLabel = "Confirm", disabled, busy, title, onConfirm }: Props) {
  const [asking, setAsking] = useState(false);
  useEffect(() => {
    if (!asking) return;
    const timer = setTimeout(() => setAsking(false), 4000);
    return () => clearTimeout(timer);
  }, [asking]);
  return (
    <button
      type="button"
      className={asking ? "btn btn--small btn--danger" : "btn btn--small btn--ghost-danger"}
      disabled={disabled || busy}
      title={title}
      onClick={() => {
        if (asking) {
          setAsking(false);
          onConfirm();
        } else {
          setAsking(true);
        }
      }}
    >
      {busy ? "…" : asking ? confirmLabel : label}
    </button>
  );
}
