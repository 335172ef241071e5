import type { ReactNode } from "react";
import "./globals.css";

export const metadata = {
  title: "Portcullis Tasks",
  description: "A task list behind the Portcullis gateway, signed in with Better Auth",
};

export const viewport = { width: "device-width", initialScale: 1 };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
