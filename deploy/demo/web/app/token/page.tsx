"use client";

import { useEffect, useState } from "react";

function decodePart(part: string): unknown {
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "=")));
}

export default function TokenPage() {
  const [token, setToken] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function load() {
    setError(null);
    const response = await fetch("/api/auth/token", { credentials: "include" });
    if (!response.ok) {
      setToken(null);
      setError(response.status === 401 ? "Not signed in." : `Request failed (${response.status}).`);
      return;
    }
    const body = (await response.json()) as { token: string };
    setToken(body.token);
  }

  useEffect(() => {
    void load();
  }, []);

  if (error) {
    return (
      <main className="shell content">
        <p>{error}</p>
        <a href="/">Sign in</a>
      </main>
    );
  }
  if (!token) return <p>Loading…</p>;

  const [header, payload] = token.split(".");
  return (
    <main className="shell content">
      <p>
        <a href="/">← Your tasks</a>
      </p>
      <h1>Your JWT</h1>
      <p>Send it to the gateway as <code>Authorization: Bearer …</code>. It is short-lived; reload for a fresh one.</p>
      <textarea readOnly value={token} rows={8} style={{ width: "100%", fontFamily: "monospace" }} />
      <h2>Header</h2>
      <pre>{JSON.stringify(decodePart(header), null, 2)}</pre>
      <h2>Claims</h2>
      <pre>{JSON.stringify(decodePart(payload), null, 2)}</pre>
      <button onClick={() => void load()}>Get a fresh token</button>
    </main>
  );
}
