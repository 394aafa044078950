/**
 * Notices in the corner: every failed mutation ends up here (through the query client's
 * mutation cache), so no API error is swallowed, plus confirmations of what succeeded.
 */
import { createContext, useContext, useMemo, useSyncExternalStore, type ReactNode } from "react";
import { describeError } from "./errors";

export interface Toast {
  id: number;
  tone: "error" | "ok";
  title: string;
  detail?: string;
}

interface Toasts {
  toasts: readonly Toast[];
  push(toast: Omit<Toast, "id">): void;
  dismiss(id: number): void;
}

const ToastContext = createContext<Toasts | null>(null);

let nextId = 1;

/** A store outside React, so the query client (created before any component) can report into it. */
export function createToastStore() {
  const listeners = new Set<() => void>();
  let toasts: Toast[] = [];
  const timers = new Map<number, ReturnType<typeof setTimeout>>();
  const emit = () => listeners.forEach((l) => l());
  const dismiss = (id: number) => {
    toasts = toasts.filter((t) => t.id !== id);
    clearTimeout(timers.get(id));
    timers.delete(id);
    emit();
  };
  const push = (toast: Omit<Toast, "id">) => {
    const id = nextId++;
    toasts = [...toasts, { ...toast, id }].slice(-5);
    // Errors stay until read (longer); confirmations go quickly.
    timers.set(id, setTimeout(() => dismiss(id), toast.tone === "error" ? 12000 : 3500));
    emit();
  };
  const pushError = (error: unknown, title = "Request failed") => {
    const d = describeError(error);
    push({ tone: "error", title: `${title} · ${d.code}${d.status ? ` ${d.status}` : ""}`, detail: d.message });
  };
  return {
    subscribe(listener: () => void) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    get: () => toasts,
    push,
    pushError,
    dismiss,
  };
}

export type ToastStore = ReturnType<typeof createToastStore>;

export function ToastProvider({ store, children }: { store: ToastStore; children: ReactNode }) {
  const toasts = useSyncExternalStore(store.subscribe, store.get);
  const value = useMemo(() => ({ toasts, push: store.push, dismiss: store.dismiss }), [toasts, store]);
  return <ToastContext.Provider value={value}>{children}</ToastContext.Provider>;
}

export function useToasts(): Toasts {
  const toasts = useContext(ToastContext);
  if (!toasts) throw new Error("useToasts() needs a <ToastProvider>");
  return toasts;
}
