import { getAuth } from "@/lib/auth";

export const dynamic = "force-dynamic";

// 200 once the database is reachable and its schema is in place.
export async function GET(): Promise<Response> {
  try {
    await getAuth();
    return Response.json({ status: "ok" });
  } catch (err) {
    console.error("health check failed:", err);
    return Response.json({ status: "unavailable" }, { status: 503 });
  }
}
