// The page's only way to the task service: through Portcullis, with Better Auth's JWT.
//
// The JWT lives in this module's memory only (never in localStorage, sessionStorage or
// a cookie the page can read). It comes from Better Auth's GET /api/auth/token, which
// the session cookie (httpOnly) authorizes. A token close to its `exp` is replaced
// before use; a 401 from the gateway gets one refresh and one retry, and a 401 after
// that, or a token endpoint that no longer knows the session, means "signed out".

export type Claims = {
  sub: string;
  exp: number;
  iat?: number;
  email?: string;
  name?: string;
  role?: string;
};

type Token = { value: string; claims: Claims };

export type Task = {
  id: number;
  title: string;
  description: string;
  completed: boolean;
  created_at: string;
  updated_at: string;
};

export type AdminStats = { users: number; tasks: number; completed: number };

/** The session is gone: the person has to sign in again. */
export class SignedOutError extends Error {
  constructor() {
    super("signed out");
    this.name = "SignedOutError";
  }
}

/** A call that did not succeed; `status` 0 means the gateway could not be reached. */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly code: string | null,
  ) {
    super(`gateway answered ${status}${code ? ` (${code})` : ""}`);
    this.name = "GatewayError";
  }

  /** Nothing the person did: the gateway, the task service or the sign-in server is away. */
  get unavailable(): boolean {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }
}

function decodeClaims(token: string): Claims {
  const part = token.split(".")[1] ?? "";
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const json = atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "="));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0)))) as Claims;
}

let current: Token | null = null;
let inFlight: Promise<Token> | null = null;

// Replace a token this long before it expires: 30 s, or a quarter of a short lifetime.
function closeToExpiry(token: Token): boolean {
  const lifetime = token.claims.iat ? token.claims.exp - token.claims.iat : 60;
  const margin = Math.min(30, lifetime / 4);
  return Date.now() / 1000 >= token.claims.exp - margin;
}

async function fetchToken(): Promise<Token> {
  let response: Response;
  try {
    response = await fetch("/api/auth/token", { credentials: "same-origin", cache: "no-store" });
  } catch {
    throw new GatewayError(0, null);
  }
  if (response.status === 401) throw new SignedOutError();
  if (!response.ok) throw new GatewayError(response.status >= 500 ? 503 : response.status, null);
  const { token } = (await response.json()) as { token: string };
  return { value: token, claims: decodeClaims(token) };
}

/** A JWT that is not about to expire; `fresh` asks Better Auth for a new one regardless. */
export async function getToken(fresh = false): Promise<Token> {
  if (!fresh && current && !closeToExpiry(current)) return current;
  // One request for a new token at a time, shared by every caller.
  inFlight ??= fetchToken()
    .then((token) => (current = token))
    .finally(() => {
      inFlight = null;
    });
  return inFlight;
}

/** Drops the JWT from memory (on sign-out). */
export function forgetToken(): void {
  current = null;
}

export function createGateway(baseUrl: string) {
  async function send(token: Token, method: string, path: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { Authorization: `Bearer ${token.value}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      return await fetch(`${baseUrl}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      throw new GatewayError(0, null);
    }
  }

  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let response = await send(await getToken(), method, path, body);
    if (response.status === 401) {
      // Expired in between, or the clock here is off: one fresh token, one retry.
      response = await send(await getToken(true), method, path, body);
      if (response.status === 401) {
        forgetToken();
        throw new SignedOutError();
      }
    }
    if (!response.ok) {
      let code: string | null = null;
      try {
        const payload = (await response.json()) as { error?: unknown };
        if (typeof payload.error === "string") code = payload.error;
      } catch {
        // Not JSON: the status says enough.
      }
      throw new GatewayError(response.status, code);
    }
    return (response.status === 204 ? undefined : await response.json()) as T;
  }

  return {
    listTasks: () => call<Task[]>("GET", "/api/tasks"),
    createTask: (input: { title: string; description: string; completed?: boolean }) =>
      call<Task>("POST", "/api/tasks", input),
    updateTask: (id: number, changes: Partial<Pick<Task, "title" | "description" | "completed">>) =>
      call<Task>("PATCH", `/api/tasks/${id}`, changes),
    deleteTask: (id: number) => call<void>("DELETE", `/api/tasks/${id}`),
    adminStats: () => call<AdminStats>("GET", "/api/admin/stats"),
  };
}

export type Gateway = ReturnType<typeof createGateway>;
