import { configFromEnv } from "@/lib/config";
import { TaskApp } from "./_components/TaskApp";

// Read GATEWAY_URL when the server runs, not when it is built.
export const dynamic = "force-dynamic";

export default function Home() {
  return <TaskApp gatewayUrl={configFromEnv().gatewayUrl} />;
}
