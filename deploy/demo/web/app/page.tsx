import { configFromEnv } from "@/lib/config";
import { TaskApp } from "./_components/TaskApp";

// Read GATEWAY_URL and PORTCULLIS_EDGE when the server runs, not when it is built.
export const dynamic = "force-dynamic";

export default function Home() {
  const { gatewayUrl, pageMode } = configFromEnv();
  return <TaskApp mode={pageMode} gatewayUrl={gatewayUrl} />;
}
