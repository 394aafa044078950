/**
 * TanStack Query defaults for data kept fresh by the update stream.
 *
 * While the stream is live, cached data is fresh until the stream says otherwise: the
 * stream invalidates what went stale, and a reconnect resumes without a gap (or resyncs
 * everything). So there is no polling (`refetchInterval` off) and `staleTime` is
 * infinite. While the stream is down, nothing vouches for the cache, so data counts as
 * stale at once and refetches on mount and focus like plain TanStack Query.
 */
import { MutationCache, QueryClient, type MutationKey } from "@tanstack/react-query";
import { httpStatusOf } from "./lib/errors";

let streamLive = false;

/** Tells the query defaults whether the update stream is live (set by `useSSEUpdates`). */
export function setStreamLive(live: boolean): void {
  streamLive = live;
}

/** `onMutationError` hears every failed mutation, with its key (`[["storage", "volumes", "create"]]`). */
export function createQueryClient(onMutationError?: (error: unknown, key: MutationKey | undefined) => void): QueryClient {
  return new QueryClient({
    mutationCache: new MutationCache({
      onError: (error, _variables, _context, mutation) => onMutationError?.(error, mutation.options.mutationKey),
    }),
    defaultOptions: {
      queries: {
        staleTime: () => (streamLive ? Infinity : 0),
        refetchInterval: false,
        // A 4xx will not get better by asking again; an unreachable upstream might.
        retry: (failures, error) => {
          const status = httpStatusOf(error);
          return failures < 2 && (status === undefined || status >= 500);
        },
        retryDelay: (attempt) => Math.min(500 * 2 ** attempt, 4000),
      },
      mutations: { retry: false },
    },
  });
}
