/**
 * The typed tRPC client: batched HTTP for queries and mutations, one Server-Sent-Events
 * connection for the `updates.onUpdate` subscription. Typed by the generated `AppRouter`.
 */
import type { AppRouter } from "@stalecast/bindings";
import { createTRPCClient, httpBatchLink, httpSubscriptionLink, splitLink } from "@trpc/client";
import { createTRPCContext } from "@trpc/tanstack-react-query";

export const { TRPCProvider, useTRPC, useTRPCClient } = createTRPCContext<AppRouter>();

export type Client = ReturnType<typeof createClient>;

/** A client for the Stalecast server at `base` (the page's own origin by default). */
export function createClient(base = "") {
  const url = `${base}/trpc`;
  return createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === "subscription",
        true: httpSubscriptionLink({ url }),
        false: httpBatchLink({ url, maxURLLength: 4000 }),
      }),
    ],
  });
}
