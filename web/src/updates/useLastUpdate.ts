/** The last update of one type, from `updates.state` (kept current by the stream). */
import type { TypeUpdateState, UpdateType } from "@stalecast/bindings";
import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "../trpc";

export function useUpdatesState() {
  const trpc = useTRPC();
  return useQuery(trpc.updates.state.queryOptions());
}

export function useLastUpdate(type: UpdateType): TypeUpdateState | undefined {
  const { data } = useUpdatesState();
  return data?.types.find((t) => t.type === type);
}
