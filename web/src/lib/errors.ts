/** Turning API failures into something a person can read. */
import { TRPCClientError } from "@trpc/client";

interface ErrorData {
  code?: string;
  httpStatus?: number;
  path?: string;
}

function dataOf(error: unknown): ErrorData | undefined {
  if (error instanceof TRPCClientError) {
    return (error.data ?? undefined) as ErrorData | undefined;
  }
  return undefined;
}

export function httpStatusOf(error: unknown): number | undefined {
  return dataOf(error)?.httpStatus;
}

export interface Described {
  /** tRPC's code (`BAD_REQUEST`, `SERVICE_UNAVAILABLE`, …) or `NETWORK` when nothing answered. */
  code: string;
  status?: number;
  message: string;
  path?: string;
}

/** What went wrong, from a tRPC error or anything else thrown. */
export function describeError(error: unknown): Described {
  const data = dataOf(error);
  const message = error instanceof Error ? error.message : String(error);
  if (data?.code) {
    return { code: data.code, status: data.httpStatus, message, path: data.path };
  }
  // No envelope: the request never got an answer from Stalecast.
  const network = /fetch|network|load failed|ECONNREFUSED/i.test(message);
  return { code: network ? "NETWORK" : "ERROR", message: network ? "Stalecast is unreachable" : message };
}

const ACTIONS: Record<string, string> = {
  "compute.servers.create": "Creating the server",
  "compute.servers.delete": "Deleting the server",
  "compute.servers.start": "Starting the server",
  "compute.servers.stop": "Stopping the server",
  "storage.volumes.create": "Creating the volume",
  "storage.volumes.delete": "Deleting the volume",
  "storage.snapshots.create": "Creating the snapshot",
  "storage.snapshots.delete": "Deleting the snapshot",
  "networks.subnets.create": "Creating the subnet",
  "networks.subnets.delete": "Deleting the subnet",
};

/** "Creating the volume failed" from a tRPC mutation key (`[["storage", "volumes", "create"]]`). */
export function failedAction(key: readonly unknown[] | undefined): string {
  const path = Array.isArray(key?.[0]) ? (key[0] as string[]).join(".") : "";
  return `${ACTIONS[path] ?? (path || "The request")} failed`;
}
