// Runtime configuration of the demo auth server, read from the environment.
// Every value is read when the server starts, not at build time, so one
// production build can serve any number of differently configured instances.

export type JwtAlg = "EdDSA" | "ES256" | "ES512" | "RS256" | "PS256";

export const SUPPORTED_ALGS: readonly JwtAlg[] = ["EdDSA", "ES256", "ES512", "RS256", "PS256"];

// Maps an algorithm name onto the jwt plugin's `jwks.keyPairConfig`.
export function keyPairConfigFor(alg: JwtAlg) {
  switch (alg) {
    case "EdDSA":
      return { alg: "EdDSA", crv: "Ed25519" } as const;
    case "ES256":
      return { alg: "ES256" } as const;
    case "ES512":
      return { alg: "ES512" } as const;
    case "RS256":
      return { alg: "RS256", modulusLength: 2048 } as const;
    case "PS256":
      return { alg: "PS256", modulusLength: 2048 } as const;
  }
}

function optionalSeconds(name: string): number | undefined {
  const raw = process.env[name]?.trim();
  if (!raw) return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${name} must be a positive whole number of seconds, got "${raw}"`);
  }
  return value;
}

function optionalString(name: string): string | undefined {
  const raw = process.env[name]?.trim();
  return raw ? raw : undefined;
}

export type Database =
  | { kind: "sqlite"; path: string }
  | { kind: "postgres"; connectionString: string };

// DATABASE_URL:
//   unset                        -> SQLite file ./auth.db (relative to the working directory)
//   file:PATH or sqlite:PATH     -> SQLite file PATH
//   postgres://... / postgresql://... -> PostgreSQL
export function databaseFromEnv(): Database {
  const url = optionalString("DATABASE_URL");
  if (!url) return { kind: "sqlite", path: "auth.db" };
  if (url.startsWith("postgres://") || url.startsWith("postgresql://")) {
    return { kind: "postgres", connectionString: url };
  }
  for (const prefix of ["sqlite://", "sqlite:", "file://", "file:"]) {
    if (url.startsWith(prefix)) return { kind: "sqlite", path: url.slice(prefix.length) };
  }
  throw new Error(`DATABASE_URL must start with postgres://, postgresql://, file: or sqlite:`);
}

export function configFromEnv() {
  const algRaw = optionalString("JWT_ALG") ?? "EdDSA";
  const alg = SUPPORTED_ALGS.find((a) => a.toLowerCase() === algRaw.toLowerCase());
  if (!alg) {
    throw new Error(`JWT_ALG must be one of ${SUPPORTED_ALGS.join(", ")}, got "${algRaw}"`);
  }
  return {
    alg,
    expirationTime: optionalString("JWT_EXPIRATION") ?? "15m",
    issuer: optionalString("JWT_ISSUER"),
    audience: optionalString("JWT_AUDIENCE"),
    rotationInterval: optionalSeconds("JWKS_ROTATION_INTERVAL"),
    gracePeriod: optionalSeconds("JWKS_GRACE_PERIOD"),
    database: databaseFromEnv(),
    // Comma-separated emails whose accounts get Better Auth's "admin" role.
    adminEmails: (optionalString("DEMO_ADMIN_EMAILS") ?? "")
      .split(",")
      .map((email) => email.trim().toLowerCase())
      .filter(Boolean),
    // Where the browser sends task calls: the gateway, never the task service.
    gatewayUrl: (optionalString("GATEWAY_URL") ?? "http://127.0.0.1:8080").replace(/\/+$/, ""),
    sessionCookieCache: sessionCookieCacheFromEnv(),
    pageMode: pageModeFromEnv(),
    oidcDiscovery: oidcDiscoveryFromEnv(),
  };
}

// OIDC_DISCOVERY=1 adds Better Auth's OAuth provider plugin, which publishes an OpenID
// discovery document at {JWT_ISSUER}/.well-known/openid-configuration (set JWT_ISSUER
// to {BETTER_AUTH_URL}/api/auth). Unset or 0: no such document, as before.
function oidcDiscoveryFromEnv(): boolean {
  const raw = optionalString("OIDC_DISCOVERY") ?? "0";
  if (raw !== "0" && raw !== "1") throw new Error(`OIDC_DISCOVERY must be 0 or 1, got "${raw}"`);
  return raw === "1";
}

// How the task page reaches the task service:
//   unset or PORTCULLIS_EDGE=0   "sidecar": Portcullis on GATEWAY_URL, a bearer JWT
//   PORTCULLIS_EDGE=1            "edge": Portcullis serves this page too; same-origin
//                                calls with the session cookie (needs SESSION_COOKIE_CACHE=jwt)
function pageModeFromEnv(): "sidecar" | "edge" {
  const raw = optionalString("PORTCULLIS_EDGE") ?? "0";
  if (raw !== "0" && raw !== "1") throw new Error(`PORTCULLIS_EDGE must be 0 or 1, got "${raw}"`);
  if (raw === "0") return "sidecar";
  if (optionalString("SESSION_COOKIE_CACHE") !== "jwt") {
    throw new Error("PORTCULLIS_EDGE=1 needs SESSION_COOKIE_CACHE=jwt (the gateway verifies the signed cookie)");
  }
  return "edge";
}

// Edge mode (a gateway in front of this app verifies the session cookie itself):
//   SESSION_COOKIE_CACHE=jwt     sign the session cookie cache with the JWT plugin's keys
//   SESSION_COOKIE_MAX_AGE=300   its lifetime in seconds (Better Auth's default: 300)
// Unset: no cookie cache, as before.
function sessionCookieCacheFromEnv(): { maxAge?: number } | undefined {
  const mode = optionalString("SESSION_COOKIE_CACHE");
  if (!mode) return undefined;
  if (mode !== "jwt") throw new Error(`SESSION_COOKIE_CACHE must be "jwt", got "${mode}"`);
  const maxAge = optionalSeconds("SESSION_COOKIE_MAX_AGE");
  return maxAge ? { maxAge } : {};
}
