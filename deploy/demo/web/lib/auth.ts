import { betterAuth, type BetterAuthOptions } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { admin, bearer, jwt } from "better-auth/plugins";
import { oauthProvider } from "@better-auth/oauth-provider";
import { configFromEnv, keyPairConfigFor } from "./config";
import { afterUserSessionsEnded, beforeSessionDelete } from "./revocation";

function buildOptions() {
  const cfg = configFromEnv();
  return {
    cfg,
    plugins: [
      bearer(),
      // Adds `role` to the user ("user" unless made "admin"); the gateway reads it from
      // the JWT's `role` claim for routes with roles = ["admin"].
      admin(),
      jwt({
        ...(cfg.sessionCookieCache ? { sessionCookieCache: true } : {}),
        jwks: {
          keyPairConfig: keyPairConfigFor(cfg.alg),
          ...(cfg.rotationInterval ? { rotationInterval: cfg.rotationInterval } : {}),
          ...(cfg.gracePeriod ? { gracePeriod: cfg.gracePeriod } : {}),
        },
        jwt: {
          expirationTime: cfg.expirationTime,
          // What the gateway and the page need, nothing more (`sub` is the user id).
          // `sid` names the session (its id, never its token): the gateway's
          // session_claim, so ending one session revokes exactly its tokens.
          definePayload: ({ user, session }) => ({
            email: user.email,
            name: user.name,
            role: typeof user.role === "string" && user.role ? user.role : "user",
            sid: session.id,
          }),
          ...(cfg.issuer ? { issuer: cfg.issuer } : {}),
          ...(cfg.audience ? { audience: cfg.audience } : {}),
        },
      }),
      // OIDC_DISCOVERY=1: an OpenID provider whose discovery document names the jwt
      // plugin's issuer and JWKS, so a gateway can be configured by discovery alone.
      ...(cfg.oidcDiscovery ? [oauthProvider({ loginPage: "/", consentPage: "/" })] : []),
    ],
  };
}

async function openDatabase(cfg: ReturnType<typeof configFromEnv>) {
  if (cfg.database.kind === "postgres") {
    const { Pool } = await import("pg");
    return new Pool({ connectionString: cfg.database.connectionString });
  }
  const { default: Database } = await import("better-sqlite3");
  const db = new Database(cfg.database.path);
  db.pragma("journal_mode = WAL");
  db.pragma("busy_timeout = 5000");
  return db;
}

type DemoDatabase = Awaited<ReturnType<typeof openDatabase>>;

// Accounts that already exist when the server starts get the admin role too.
async function promoteAdmins(database: DemoDatabase, emails: readonly string[]) {
  if (emails.length === 0) return;
  const marks = emails.map(() => "?");
  if ("prepare" in database) {
    database
      .prepare(`UPDATE "user" SET role = 'admin' WHERE lower(email) IN (${marks.join(", ")})`)
      .run(...emails);
  } else {
    const params = emails.map((_, i) => `$${i + 1}`);
    await database.query(`UPDATE "user" SET role = 'admin' WHERE lower(email) IN (${params.join(", ")})`, [
      ...emails,
    ]);
  }
}

async function createAuth() {
  const { cfg, plugins } = buildOptions();
  const database = await openDatabase(cfg);
  const isAdminEmail = (email: string) => cfg.adminEmails.includes(email.trim().toLowerCase());
  const options = {
    // BETTER_AUTH_URL and BETTER_AUTH_SECRET are read by Better Auth itself.
    database,
    emailAndPassword: { enabled: true },
    ...(cfg.sessionCookieCache
      ? { session: { cookieCache: { enabled: true, strategy: "jwt" as const, ...cfg.sessionCookieCache } } }
      : {}),
    plugins,
    // Ending sessions reaches the gateway (lib/revocation.ts): every deleted session is
    // revoked there before its row goes, and a sign-out everywhere or a ban once more
    // after all of them are gone.
    hooks: { after: afterUserSessionsEnded },
    databaseHooks: {
      session: {
        delete: { before: beforeSessionDelete },
      },
      user: {
        create: {
          // A new account whose email is in DEMO_ADMIN_EMAILS starts as an admin.
          before: async (user) => (isAdminEmail(user.email) ? { data: { ...user, role: "admin" } } : undefined),
        },
      },
    },
  } satisfies BetterAuthOptions;

  // Create or update the schema (user, session, account, verification, jwks).
  // getMigrations only plans what is missing, so this is idempotent.
  const { runMigrations } = await getMigrations(options);
  await runMigrations();
  await promoteAdmins(database, cfg.adminEmails);

  return betterAuth(options);
}

export type Auth = Awaited<ReturnType<typeof createAuth>>;

const globalForAuth = globalThis as unknown as { __demoAuth?: Promise<Auth> };

// The auth instance is created on first use (never during `next build`) and
// shared by every route of this server process.
export function getAuth(): Promise<Auth> {
  if (!globalForAuth.__demoAuth) {
    globalForAuth.__demoAuth = createAuth().catch((err) => {
      globalForAuth.__demoAuth = undefined;
      throw err;
    });
  }
  return globalForAuth.__demoAuth;
}
