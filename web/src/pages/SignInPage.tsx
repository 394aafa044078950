/**
 * Sign-in: the cloud's own user name and password (Keystone's), and the domain when it is
 * not the default one. With the embedded simulator as the cloud, its demo users are
 * listed (the server says which, at `/sign-in.json`; a real cloud lists none).
 */
import type { Me } from "@stalecast/bindings";
import { useMutation } from "@tanstack/react-query";
import { useEffect, useState, type FormEvent } from "react";
import { describeError } from "../lib/errors";
import { useTRPC } from "../trpc";

interface DemoUser {
  user: string;
  password: string;
  about: string;
}

/** The demo users the server offers, if any. */
function useDemoUsers(): DemoUser[] {
  const [users, setUsers] = useState<DemoUser[]>([]);
  useEffect(() => {
    let live = true;
    fetch("/sign-in.json")
      .then((r) => (r.ok ? r.json() : { demoUsers: [] }))
      .then((hints: { demoUsers?: DemoUser[] }) => {
        if (live) setUsers(hints.demoUsers ?? []);
      })
      .catch(() => {});
    return () => {
      live = false;
    };
  }, []);
  return users;
}

export function SignInPage({
  notice,
  failed,
  onSignedIn,
}: {
  /** Why the user is here again (signed out, expired), if they were signed in. */
  notice: string | null;
  /** Asking who is signed in failed for another reason than having no session. */
  failed: unknown;
  onSignedIn(me: Me): void;
}) {
  const trpc = useTRPC();
  const demo = useDemoUsers();
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [domain, setDomain] = useState("");
  const login = useMutation(trpc.auth.login.mutationOptions({ onSuccess: onSignedIn }));
  const submit = (event: FormEvent) => {
    event.preventDefault();
    login.mutate({ user, password, ...(domain.trim() ? { domain: domain.trim() } : {}) });
  };
  const error = login.error ? describeError(login.error) : failed ? describeError(failed) : null;
  return (
    <div className="signin">
      <form className="signin__card form" onSubmit={submit} aria-label="Sign in">
        <h1 className="brand">
          <span className="brand__mark" aria-hidden="true" />
          Stalecast
        </h1>
        <p className="muted">Sign in with your cloud account.</p>
        {notice ? (
          <p className="signin__notice" role="status" data-testid="signin-notice">
            {notice}
          </p>
        ) : null}
        <label>
          <span>User name</span>
          <input name="user" autoComplete="username" required maxLength={255} value={user} onChange={(e) => setUser(e.target.value)} />
        </label>
        <label>
          <span>Password</span>
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            required
            maxLength={4096}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        <label>
          <span>Domain</span>
          <input name="domain" placeholder="Default" maxLength={64} value={domain} onChange={(e) => setDomain(e.target.value)} />
        </label>
        {error ? (
          <p className="signin__error" role="alert" data-testid="signin-error">
            {error.code === "TOO_MANY_REQUESTS" ? `Too many failed sign-ins. ${error.message}` : error.message}
          </p>
        ) : null}
        <button type="submit" className="btn btn--primary" disabled={login.isPending}>
          {login.isPending ? "Signing in…" : "Sign in"}
        </button>
        {demo.length > 0 ? (
          <section className="signin__demo" aria-label="Demo users">
            <p className="muted">The embedded simulator's users:</p>
            <ul>
              {demo.map((d) => (
                <li key={d.user}>
                  <button
                    type="button"
                    className="btn btn--small"
                    onClick={() => {
                      setUser(d.user);
                      setPassword(d.password);
                      setDomain("");
                    }}
                  >
                    {d.user}
                  </button>{" "}
                  <span className="mono">{d.user} / {d.password}</span> <span className="muted">— {d.about}</span>
                </li>
              ))}
            </ul>
          </section>
        ) : null}
      </form>
    </div>
  );
}
