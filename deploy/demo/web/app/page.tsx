"use client";

import { useState, type FormEvent } from "react";
import { authClient } from "@/lib/auth-client";

export default function Home() {
  const { data: session, isPending, refetch } = authClient.useSession();
  const [mode, setMode] = useState<"sign-in" | "sign-up">("sign-in");
  const [name, setName] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(null);
    const result =
      mode === "sign-up"
        ? await authClient.signUp.email({ name: name || email, email, password })
        : await authClient.signIn.email({ email, password });
    if (result.error) {
      setError(result.error.message ?? result.error.statusText);
      return;
    }
    setPassword("");
    refetch();
  }

  if (isPending) return <p>Loading…</p>;

  if (session) {
    return (
      <main>
        <h1>Signed in</h1>
        <p>
          {session.user.email} (user id <code>{session.user.id}</code>)
        </p>
        <p>
          <a href="/token">Show the JWT</a> to send to the gateway.
        </p>
        <button onClick={() => authClient.signOut().then(() => refetch())}>Sign out</button>
      </main>
    );
  }

  return (
    <main>
      <h1>{mode === "sign-up" ? "Create an account" : "Sign in"}</h1>
      <form onSubmit={submit} style={{ display: "grid", gap: "0.5rem", maxWidth: 320 }}>
        {mode === "sign-up" && (
          <input placeholder="Name" value={name} onChange={(e) => setName(e.target.value)} />
        )}
        <input type="email" placeholder="Email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <input
          type="password"
          placeholder="Password (8+ characters)"
          required
          minLength={8}
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        <button type="submit">{mode === "sign-up" ? "Sign up" : "Sign in"}</button>
      </form>
      {error && <p style={{ color: "crimson" }}>{error}</p>}
      <p>
        {mode === "sign-up" ? "Already have an account? " : "New here? "}
        <button type="button" onClick={() => setMode(mode === "sign-up" ? "sign-in" : "sign-up")}>
          {mode === "sign-up" ? "Sign in" : "Create an account"}
        </button>
      </p>
    </main>
  );
}
