import type { ReactNode } from "react";

export const metadata = {
  title: "Portcullis demo",
  description: "Better Auth sign-in whose JWTs Portcullis verifies",
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body style={{ fontFamily: "system-ui, sans-serif", maxWidth: 720, margin: "2rem auto", padding: "0 1rem" }}>
        <header style={{ marginBottom: "1.5rem" }}>
          <a href="/">Sign in</a> · <a href="/token">Your JWT</a>
        </header>
        {children}
      </body>
    </html>
  );
}
