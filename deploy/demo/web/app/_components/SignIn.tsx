"use client";

import { useState, type FormEvent } from "react";
import { authClient } from "@/lib/auth-client";

export function SignIn({ notice, onSignedIn }: { notice: string | null; onSignedIn: () => void }) {
  const [mode, setMode] = useState<"sign-in" | "sign-up">("sign-in");
  const [name, setName] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const signingUp = mode === "sign-up";

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(null);
    setBusy(true);
    try {
      const result = signingUp
        ? await authClient.signUp.email({ name: name.trim() || email, email, password })
        : await authClient.signIn.email({ email, password });
      if (result.error) {
        setError(result.error.message ?? "That did not work. Please try again.");
        return;
      }
      setPassword("");
      onSignedIn();
    } catch {
      setError("We can't reach the sign-in service right now. Please try again in a moment.");
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="shell auth">
      <div className="card auth-card">
        <p className="brand">
          <span className="brand-mark" aria-hidden="true">
            ▦
          </span>{" "}
          Portcullis Tasks
        </p>
        <h1>{signingUp ? "Create your account" : "Sign in to your tasks"}</h1>
        {notice && (
          <p className="notice" role="status">
            {notice}
          </p>
        )}
        <form onSubmit={submit} className="stack" aria-label={signingUp ? "Sign up" : "Sign in"}>
          {signingUp && (
            <label className="field">
              <span>Name</span>
              <input value={name} autoComplete="name" onChange={(e) => setName(e.target.value)} />
            </label>
          )}
          <label className="field">
            <span>Email</span>
            <input
              type="email"
              required
              autoComplete="email"
              value={email}
              onChange={(e) => setEmail(e.target.value)}
            />
          </label>
          <label className="field">
            <span>Password</span>
            <input
              type="password"
              required
              minLength={8}
              autoComplete={signingUp ? "new-password" : "current-password"}
              value={password}
              onChange={(e) => setPassword(e.target.value)}
            />
          </label>
          {signingUp && <p className="hint">At least 8 characters.</p>}
          <button type="submit" className="primary" disabled={busy}>
            {signingUp ? "Sign up" : "Sign in"}
          </button>
        </form>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <p className="switch">
          {signingUp ? "Already have an account?" : "New here?"}{" "}
          <button
            type="button"
            className="link"
            onClick={() => {
              setError(null);
              setMode(signingUp ? "sign-in" : "sign-up");
            }}
          >
            {signingUp ? "Use an existing account" : "Create an account"}
          </button>
        </p>
      </div>
    </main>
  );
}
