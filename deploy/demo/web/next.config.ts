import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // Native / server-only database drivers stay outside the server bundle.
  serverExternalPackages: ["better-sqlite3", "pg"],
  // No telemetry banner or outbound calls from the demo.
  poweredByHeader: false,
};

export default nextConfig;
