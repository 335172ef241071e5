"use client";

import { useState } from "react";
import { authClient } from "@/lib/auth-client";
import { forgetToken } from "@/lib/gateway";
import { SignIn } from "./SignIn";
import { Tasks } from "./Tasks";

export function TaskApp({ gatewayUrl }: { gatewayUrl: string }) {
  const { data: session, isPending, refetch } = authClient.useSession();
  const [notice, setNotice] = useState<string | null>(null);

  async function signOut() {
    forgetToken();
    await authClient.signOut();
    setNotice(null);
    refetch();
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
      gatewayUrl={gatewayUrl}
      user={{ name: session.user.name, email: session.user.email }}
      onSignOut={signOut}
      onSessionEnded={() => void sessionEnded()}
    />
  );
}
