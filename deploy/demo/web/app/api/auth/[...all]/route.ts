import { getAuth } from "@/lib/auth";

// Better Auth's catch-all handler: /api/auth/sign-up/email, /api/auth/sign-in/email,
// /api/auth/get-session, /api/auth/token, /api/auth/jwks, ...
async function handler(request: Request): Promise<Response> {
  const auth = await getAuth();
  return auth.handler(request);
}

export const GET = handler;
export const POST = handler;
export const PUT = handler;
export const PATCH = handler;
export const DELETE = handler;
