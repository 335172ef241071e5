"use client";

import { useState } from "react";
import { authClient } from "@/lib/auth-client";
import { forgetToken, type GatewayMode } from "@/lib/gateway";
import { SignIn } from "./SignIn";
import { Tasks } from "./Tasks";

export function TaskApp({ mode, gatewayUrl }: { mode: GatewayMode; gatewayUrl: string }) {
  const { data: session, isPending, refetch } = authClient.useSession();
  const [notice, setNotice] = useState<string | null>(null);

  async function signOut() {
    forgetToken();
    await authClient.signOut();
    setNotice(null);
    refetch();
  }

  // Ends every session of this person (Better Auth's revokeSessions); the web app tells
  // the gateway, so the JWTs other browsers hold are refused at once. False: nothing
  // was confirmed, the page says so and the person can try again.
  async function signOutEverywhere(): Promise<boolean> {
    const { error } = await authClient.revokeSessions().catch(() => ({ error: true }));
    if (error) {
      refetch();
      return false;
    }
    forgetToken();
    setNotice("You are signed out on every device.");
    refetch();
    return true;
  }

  // The gateway refused a fresh token too, or Better Auth no longer knows the session:
  // end the session for good, so the page and the server agree on "signed out".
  async function sessionEnded() {
    forgetToken();
    await authClient.signOut().catch(() => undefined);
    setNotice("Your session has ended. Please sign in again.");
    refetch();
  }

  if (isPending && !session) {
    return (
      <main className="shell" aria-busy="true">
        <p className="muted center">Loading…</p>
      </main>
    );
  }

  if (!session) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={() => {
          setNotice(null);
          refetch();
        }}
      />
    );
  }

  return (
    <Tasks
      key={session.user.id}
      mode={mode}
      gatewayUrl={gatewayUrl}
      // `role` comes from Better Auth's admin plugin (the client here does not declare it).
      user={{ name: session.user.name, email: session.user.email, role: (session.user as { role?: string }).role }}
      onSignOut={signOut}
      onSignOutEverywhere={signOutEverywhere}
      onSessionEnded={() => void sessionEnded()}
    />
  );
}
