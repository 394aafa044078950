/**
 * Who is signed in, and the gate in front of the console.
 *
 * `<SessionGate>` asks `auth.me`: signed in, it renders the console with the user in
 * context (`useSession()`); not signed in, or once the session ends (any answer or the
 * update stream says `UNAUTHORIZED`: signed out in another tab, expired), it shows the
 * sign-in page instead, at the same address, with why. After signing in again the
 * console comes back where it was, and its update stream resumes from the last seq it
 * saw (the server replays what was missed, or resyncs). The session itself is an
 * HttpOnly cookie the page never reads; the tabs of a browser tell each other when it
 * ends or starts (`BroadcastChannel`), so every tab follows within a moment.
 */
import type { Me, ProjectAccess } from "@stalecast/bindings";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { SignInPage } from "../pages/SignInPage";
import { useTRPC } from "../trpc";
import { httpStatusOf } from "./errors";

export interface Session {
  me: Me;
  /** The user's part in `projectId`, if they have one. */
  project(projectId: string): ProjectAccess | undefined;
  /** Why the user may not change things in `projectId` (`null`: they may). */
  whyReadOnly(projectId: string): string | null;
  signOut(): void;
  signingOut: boolean;
}

const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession() needs a <SessionGate> above it");
  return session;
}

/** Why `me` may not write in `projectId`, in words; `null` when they may. */
export function readOnlyReason(me: Me, projectId: string): string | null {
  const access = me.projects.find((p) => p.id === projectId);
  if (!access) return `${me.user.name} has no role in this project`;
  if (access.canWrite) return null;
  return `${me.user.name} is ${access.roles.join(", ") || "without a role"} in ${access.name}: read only`;
}

/**
 * Why the user may create nothing at all (`null`: they may, in the projects this
 * answers), for the "New …" buttons.
 */
export function useCreateRights(): { writable: ProjectAccess[]; whyNot: string | null } {
  const { me } = useSession();
  const writable = me.projects.filter((p) => p.canWrite);
  const whyNot =
    writable.length > 0
      ? null
      : `${me.user.name} may only read here (${me.projects.map((p) => `${p.roles.join(", ")} in ${p.name}`).join("; ") || "no project"})`;
  return { writable, whyNot };
}

/** What the tabs of one browser tell each other. */
type SessionMessage = { kind: "ended" } | { kind: "signed-in" };

const CHANNEL = "stalecast-session";

function channel(): BroadcastChannel | null {
  return typeof BroadcastChannel === "undefined" ? null : new BroadcastChannel(CHANNEL);
}

export interface GateProps {
  /** The console, given what the stream should do when the session ends and where it resumes. */
  children(stream: {
    onUnauthorized(): void;
    onFailed(): void;
    resumeFrom: number | null;
    onSeq(seq: number): void;
  }): ReactNode;
}

export function SessionGate({ children }: GateProps) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [ended, setEnded] = useState<string | null>(null);
  // Once the session ended, nobody is asked about until someone signs in.
  const me = useQuery({
    ...trpc.auth.me.queryOptions(),
    retry: false,
    staleTime: Infinity,
    refetchOnWindowFocus: false,
    enabled: ended === null,
  });
  const lastSeq = useRef<number | null>(null);
  const lastUser = useRef<string | null>(null);
  const tabs = useMemo(channel, []);
  useEffect(() => () => tabs?.close(), [tabs]);

  /** The user asked to sign out: whatever ends the session first says so. */
  const leaving = useRef(false);
  const end = useCallback(
    (why: string, tell: boolean) => {
      const said = leaving.current ? "You signed out." : why;
      setEnded((already) => already ?? said);
      queryClient.removeQueries({ queryKey: trpc.auth.me.queryKey() });
      if (tell) tabs?.postMessage({ kind: "ended" } satisfies SessionMessage);
    },
    [queryClient, trpc, tabs],
  );

  // Any answer saying the session is gone ends it here.
  useEffect(() => {
    const unauthorized = (error: unknown) => httpStatusOf(error) === 401;
    const stopQueries = queryClient.getQueryCache().subscribe((event) => {
      if (event.type !== "updated" || event.action.type !== "error" || !unauthorized(event.action.error)) return;
      // Asking who is signed in before anyone was is no ended session: just the sign-in page.
      const asksWho = JSON.stringify(event.query.queryKey[0]) === JSON.stringify(trpc.auth.me.queryKey()[0]);
      if (asksWho && lastUser.current === null) return;
      end("Your session has ended: sign in again to continue.", true);
    });
    const stopMutations = queryClient.getMutationCache().subscribe((event) => {
      if (event.type === "updated" && event.action.type === "error" && unauthorized(event.action.error)) {
        end("Your session has ended: sign in again to continue.", true);
      }
    });
    return () => {
      stopQueries();
      stopMutations();
    };
  }, [queryClient, trpc, end]);

  // What the other tabs say.
  useEffect(() => {
    if (!tabs) return;
    const heard = (event: MessageEvent<SessionMessage>) => {
      if (event.data.kind === "ended") end("You were signed out in another tab, or your session expired.", false);
      else {
        setEnded(null);
        void queryClient.invalidateQueries({ queryKey: trpc.auth.me.queryKey() });
      }
    };
    tabs.addEventListener("message", heard);
    return () => tabs.removeEventListener("message", heard);
  }, [tabs, end, queryClient, trpc]);

  const logout = useMutation(
    trpc.auth.logout.mutationOptions({
      onSettled: () => {
        lastSeq.current = null;
        queryClient.clear();
        end("You signed out.", true);
      },
    }),
  );

  const signedIn = useCallback(
    (who: Me) => {
      // Another user: nothing of the previous one's stays on screen, and their stream
      // starts afresh.
      if (lastUser.current !== null && lastUser.current !== who.user.id) {
        lastSeq.current = null;
        queryClient.clear();
      }
      queryClient.setQueryData(trpc.auth.me.queryKey(), who);
      leaving.current = false;
      setEnded(null);
      tabs?.postMessage({ kind: "signed-in" } satisfies SessionMessage);
    },
    [queryClient, trpc, tabs],
  );

  const data = ended === null ? me.data : undefined;
  if (data) lastUser.current = data.user.id;
  const session = useMemo<Session | null>(
    () =>
      data
        ? {
            me: data,
            project: (id) => data.projects.find((p) => p.id === id),
            whyReadOnly: (id) => readOnlyReason(data, id),
            signOut: () => {
              leaving.current = true;
              logout.mutate();
            },
            signingOut: logout.isPending,
          }
        : null,
    [data, logout],
  );
  const stream = useMemo(
    () => ({
      onUnauthorized: () => end("Your session has ended: sign in again to continue.", true),
      onFailed: () => void queryClient.refetchQueries({ queryKey: trpc.auth.me.queryKey() }),
      resumeFrom: lastSeq.current,
      onSeq: (seq: number) => {
        lastSeq.current = seq;
      },
    }),
    // A new stream (and its resume point) for each session.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [session?.me.user.id, ended, end],
  );

  if (me.isPending && ended === null) {
    return (
      <div className="signin" aria-busy="true">
        <p className="muted">Loading…</p>
      </div>
    );
  }
  if (!session) {
    const failed = me.error && httpStatusOf(me.error) !== 401 ? me.error : null;
    return <SignInPage notice={ended} failed={failed} onSignedIn={signedIn} />;
  }
  return <SessionContext.Provider value={session}>{children(stream)}</SessionContext.Provider>;
}
