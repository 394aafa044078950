/** Entry point: the query client, the typed tRPC client, and the app. */
import { QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { failedAction } from "./lib/errors";
import { ToastProvider, createToastStore } from "./lib/toasts";
import { createQueryClient } from "./queryClient";
import "./styles.css";
import { TRPCProvider, createClient } from "./trpc";

const toasts = createToastStore();
const queryClient = createQueryClient((error, key) => toasts.pushError(error, failedAction(key)));
const trpcClient = createClient();

const root = document.getElementById("root");
if (!root) throw new Error("no #root element");
createRoot(root).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <TRPCProvider trpcClient={trpcClient} queryClient={queryClient}>
        <ToastProvider store={toasts}>
          <App />
        </ToastProvider>
      </TRPCProvider>
    </QueryClientProvider>
  </StrictMode>,
);
