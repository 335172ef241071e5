import type { AdminStats } from "@/lib/gateway";

// Shown to admins only; the gateway, not this page, is what keeps others out of
// /api/admin (roles = ["admin"] in config/demo.toml).
export function AdminPanel({ stats, failed }: { stats: AdminStats | null; failed: boolean }) {
  return (
    <section className="card admin" aria-labelledby="admin-title">
      <h2 id="admin-title">Admin</h2>
      {failed && !stats ? (
        <p className="muted">The counts are not available right now.</p>
      ) : (
        <dl className="stats" aria-busy={!stats}>
          <div>
            <dt>Users with tasks</dt>
            <dd>{stats ? stats.users : "–"}</dd>
          </div>
          <div>
            <dt>Tasks</dt>
            <dd>{stats ? stats.tasks : "–"}</dd>
          </div>
          <div>
            <dt>Completed</dt>
            <dd>{stats ? stats.completed : "–"}</dd>
          </div>
        </dl>
      )}
      <p className="muted small">Totals over every account; no one&apos;s task contents.</p>
    </section>
  );
}
