import { oauthProviderOpenIdConfigMetadata } from "@better-auth/oauth-provider";
import { getAuth } from "@/lib/auth";
import { configFromEnv } from "@/lib/config";

// The OpenID discovery document of the OAuth provider plugin (OIDC_DISCOVERY=1), at
// {JWT_ISSUER}/.well-known/openid-configuration. Better Auth marks the endpoint
// server-only, so its catch-all handler does not serve it; this route does.
type WithOpenIdConfig = Parameters<typeof oauthProviderOpenIdConfigMetadata>[0];

export async function GET(request: Request): Promise<Response> {
  if (!configFromEnv().oidcDiscovery) return new Response("Not Found", { status: 404 });
  const auth = (await getAuth()) as unknown as WithOpenIdConfig;
  return oauthProviderOpenIdConfigMetadata(auth)(request);
}
