// Tells the gateway (Portcullis, POST /revoke on its admin listener) when Better Auth
// ends sessions, so the JWTs already handed out stop working at once instead of at
// their `exp`:
//
//   sign out everywhere, ban, an admin revoking a user's sessions or removing the user
//     -> {"sub": user id, "before": T}   every token of that user issued before T
//   any other session that ends (sign-out, revokeSession, revokeOtherSessions, ...)
//     -> {"sid": session id}             every token of that session (the JWT's `sid`)
//
// T is the second after now. Better Auth stamps `iat` in whole seconds and the gateway
// refuses `iat < before`, so a token minted earlier in the current second (from a
// session being deleted right now) is refused too. The price: a new sign-in in that
// same second gets a token that is refused until the second ends.
//
// Nothing is silently lost: a revocation the gateway does not confirm with 204 is
// retried once, then the request that ended the session fails (see auth.ts).
// Logs name the kind of revocation only: never a user id, session id, token or cookie.

import { APIError, createAuthMiddleware, isAPIError } from "better-auth/api";

export type Revocation = { sub: string; before: number } | { sid: string };

/** Where the gateway's admin listener is (loopback in the demo). */
export function adminUrl(): string {
  const raw = process.env.PORTCULLIS_ADMIN_URL?.trim() || "http://127.0.0.1:9090";
  return raw.replace(/\/+$/, "");
}

/** The `before` of a user revocation made now (see above). */
export function revokeBeforeNow(): number {
  return Math.floor(Date.now() / 1000) + 1;
}

const ATTEMPTS = 2;
const TIMEOUT_MS = 2000;

/** Why the gateway did not confirm a revocation; carries no id. */
export class RevocationNotConfirmed extends Error {
  constructor(
    readonly kind: "sub" | "sid",
    readonly status: number | null,
  ) {
    super(`the gateway did not confirm a ${kind} revocation (${status === null ? "unreachable" : `status ${status}`})`);
    this.name = "RevocationNotConfirmed";
  }
}

/** The gateway's admin token (its `server.admin_token_env`), when it has one: needed for
 * POST /revoke from another host. Never logged. */
function adminHeaders(): Record<string, string> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  const token = process.env.PORTCULLIS_ADMIN_TOKEN?.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

async function postOnce(body: Revocation): Promise<number | null> {
  try {
    const response = await fetch(`${adminUrl()}/revoke`, {
      method: "POST",
      headers: adminHeaders(),
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(TIMEOUT_MS),
      cache: "no-store",
    });
    await response.body?.cancel();
    return response.status;
  } catch {
    return null; // refused, reset or timed out: nothing was stored
  }
}

/** Sends `revocation`; resolves once the gateway answered 204, throws otherwise. */
export async function revoke(revocation: Revocation): Promise<void> {
  const kind = "sub" in revocation ? "sub" : "sid";
  let status: number | null = null;
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    status = await postOnce(revocation);
    if (status === 204) return;
    // A 4xx will not change on a second try; unreachable or 503 (not stored) may.
    if (status !== null && status < 500) break;
  }
  const err = new RevocationNotConfirmed(kind, status);
  console.error(`portcullis revocation: ${err.message}`);
  throw err;
}

/** What the person (or the admin) sees when the gateway did not confirm. */
export function notConfirmedError(whatHappened: string): APIError {
  return new APIError("SERVICE_UNAVAILABLE", {
    code: "GATEWAY_REVOCATION_FAILED",
    message: `${whatHappened} The gateway did not confirm that the existing access tokens are revoked; please try again.`,
  });
}

// Endpoints that end every session of one user: the user is revoked (`sub`), once per
// request, instead of each session.
const USER_PATHS = new Set([
  "/revoke-sessions",
  "/delete-user",
  "/admin/ban-user",
  "/admin/update-user", // with data.banned = true: a ban
  "/admin/revoke-user-sessions",
  "/admin/remove-user",
]);

// Endpoints whose whole point is ending sessions: they fail when the gateway does not
// confirm. Any other session that ends (sign-out, an expired session found by
// get-session, ...) is revoked best effort: a failure is logged and the session still
// ends, because keeping it alive would be worse.
const STRICT_SESSION_PATHS = new Set(["/revoke-session", "/revoke-other-sessions"]);

/** The auth endpoint a database hook runs for (Better Auth passes it, or null). */
type EndpointContext = { path?: string; context?: object } | null | undefined;

// Per request (keyed by Better Auth's per-request context object): the users revoked
// while their sessions were being deleted, for the after hook below.
const revokedUsers = new WeakMap<object, Set<string>>();

/**
 * `databaseHooks.session.delete.before`: runs for every session Better Auth deletes
 * (deleteSession and deleteUserSessions both fire it per session in 1.7), before the
 * row goes. Throwing here keeps the session: nothing changes when the gateway did not
 * confirm, and the person can simply try again.
 */
export async function beforeSessionDelete(
  session: { id: string; userId: string },
  endpoint: EndpointContext,
): Promise<void> {
  const path = endpoint?.path ?? "";
  const request = endpoint?.context;
  if (request && USER_PATHS.has(path)) {
    const done = revokedUsers.get(request) ?? new Set<string>();
    revokedUsers.set(request, done);
    if (done.has(session.userId)) return;
    try {
      await revoke({ sub: session.userId, before: revokeBeforeNow() });
    } catch {
      throw notConfirmedError("Nothing was changed.");
    }
    done.add(session.userId);
    return;
  }
  try {
    await revoke({ sid: session.id });
  } catch {
    if (STRICT_SESSION_PATHS.has(path)) throw notConfirmedError("Nothing was changed.");
    // Logged by revoke(); the session's tokens stay valid until their `exp`.
  }
}

function targetUser(path: string, body: unknown): string | null {
  const b = (body ?? {}) as { userId?: unknown; data?: { banned?: unknown } };
  if (typeof b.userId !== "string" || !b.userId) return null;
  if (path === "/admin/update-user") return b.data?.banned === true ? b.userId : null;
  return path.startsWith("/admin/") ? b.userId : null;
}

/**
 * `hooks.after`: once a user's sessions are gone, revoke the user again with a later
 * `before`, so a token minted while the sessions were being deleted is refused too; and
 * revoke a banned user who had no session left (their last JWT may still be alive).
 */
export const afterUserSessionsEnded = createAuthMiddleware(async (ctx) => {
  if (!USER_PATHS.has(ctx.path) || isAPIError(ctx.context.returned)) return;
  const users = new Set(revokedUsers.get(ctx.context) ?? []);
  const target = targetUser(ctx.path, ctx.body);
  if (target) users.add(target);
  for (const sub of users) {
    try {
      await revoke({ sub, before: revokeBeforeNow() });
    } catch {
      throw notConfirmedError(
        ctx.path === "/revoke-sessions" ? "Your sessions have ended." : "The user's sessions have ended.",
      );
    }
  }
});
