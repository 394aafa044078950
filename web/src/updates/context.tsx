/** Shares the one `useSSEUpdates()` of the app with every component below it. */
import { createContext, useContext, type ReactNode } from "react";
import { useSSEUpdates, type SSEUpdates, type SSEUpdatesOptions } from "./useSSEUpdates";

const UpdatesContext = createContext<SSEUpdates | null>(null);

/** Opens the app's update stream (once) and provides it. */
export function UpdatesProvider({ children, options }: { children: ReactNode; options?: SSEUpdatesOptions }) {
  const updates = useSSEUpdates(options);
  return <UpdatesContext.Provider value={updates}>{children}</UpdatesContext.Provider>;
}

/** The app's update stream: connection state, last seq, recent events. */
export function useUpdates(): SSEUpdates {
  const updates = useContext(UpdatesContext);
  if (!updates) throw new Error("useUpdates() needs an <UpdatesProvider> above it");
  return updates;
}
