"use client";

import { useEffect, useMemo, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import {
  createGateway,
  GatewayError,
  getToken,
  SignedOutError,
  type GatewayMode,
  type AdminStats,
  type Task,
} from "@/lib/gateway";
import { AdminPanel } from "./AdminPanel";

type Filter = "all" | "active" | "completed";

const FILTERS: { value: Filter; label: string }[] = [
  { value: "all", label: "All" },
  { value: "active", label: "Active" },
  { value: "completed", label: "Completed" },
];

const EMPTY: Record<Filter, string> = {
  all: "No tasks yet. Add your first one above.",
  active: "Nothing left to do. Every task is completed.",
  completed: "No completed tasks yet.",
};

const UNAVAILABLE = "We can't reach your tasks right now. Nothing you saved is lost; we'll keep trying.";

type Props = {
  mode: GatewayMode;
  gatewayUrl: string;
  user: { name: string; email: string; role?: string };
  onSignOut: () => Promise<void>;
  onSignOutEverywhere: () => Promise<boolean>;
  onSessionEnded: () => void;
};

type Toast = { message: string; undo?: () => void };

function byId(a: Task, b: Task) {
  return a.id - b.id;
}

function hasAdminRole(role: string | undefined) {
  return (role ?? "")
    .split(",")
    .map((r) => r.trim())
    .includes("admin");
}

export function Tasks({ mode, gatewayUrl, user, onSignOut, onSignOutEverywhere, onSessionEnded }: Props) {
  const gateway = useMemo(() => createGateway(mode, gatewayUrl), [mode, gatewayUrl]);
  const [tasks, setTasks] = useState<Task[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [unavailable, setUnavailable] = useState(false);
  const [filter, setFilter] = useState<Filter>("all");
  const [isAdmin, setIsAdmin] = useState(false);
  const [stats, setStats] = useState<AdminStats | null>(null);
  const [statsFailed, setStatsFailed] = useState(false);
  const [toast, setToast] = useState<Toast | null>(null);
  const [editing, setEditing] = useState<number | null>(null);
  const [title, setTitle] = useState("");
  const [description, setDescription] = useState("");
  const [adding, setAdding] = useState(false);
  const [titleMissing, setTitleMissing] = useState(false);
  const [signingOut, setSigningOut] = useState(false);
  const titleInput = useRef<HTMLInputElement>(null);

  // Turns a failed call into what the person sees; nothing technical reaches the page.
  function fail(err: unknown, doing: string) {
    if (err instanceof SignedOutError) {
      onSessionEnded();
      return;
    }
    if (err instanceof GatewayError && err.unavailable) {
      setUnavailable(true);
      setProblem(UNAVAILABLE);
      return;
    }
    setUnavailable(false);
    if (err instanceof GatewayError && err.status === 404) {
      setProblem("That task no longer exists; the list is up to date again.");
      void load();
      return;
    }
    setProblem(`Something went wrong while ${doing}. Please try again.`);
  }

  function recovered() {
    setUnavailable(false);
    setProblem(null);
  }

  async function refreshStats(admin: boolean) {
    if (!admin) return;
    try {
      setStats(await gateway.adminStats());
      setStatsFailed(false);
    } catch {
      setStatsFailed(true);
    }
  }

  async function load() {
    try {
      // Edge mode runs no token code: the role comes with Better Auth's session instead.
      const admin = hasAdminRole(mode === "edge" ? user.role : (await getToken()).claims.role);
      setIsAdmin(admin);
      const list = await gateway.listTasks();
      setTasks(list.sort(byId));
      recovered();
      void refreshStats(admin);
    } catch (err) {
      fail(err, "loading your tasks");
    }
  }

  async function change(doing: string, action: () => Promise<void>): Promise<boolean> {
    try {
      await action();
      recovered();
      void refreshStats(isAdmin);
      return true;
    } catch (err) {
      fail(err, doing);
      return false;
    }
  }

  useEffect(() => {
    void load();
    // Coming back to a tab left open (maybe past the JWT's lifetime): show fresh data.
    const onVisible = () => {
      if (document.visibilityState === "visible") void load();
    };
    document.addEventListener("visibilitychange", onVisible);
    return () => document.removeEventListener("visibilitychange", onVisible);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [gateway]);

  // While the gateway or the task service is away, try again every few seconds.
  useEffect(() => {
    if (!unavailable) return;
    const timer = setInterval(() => void load(), 5000);
    return () => clearInterval(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [unavailable]);

  useEffect(() => {
    if (!toast) return;
    const timer = setTimeout(() => setToast(null), 8000);
    return () => clearTimeout(timer);
  }, [toast]);

  async function addTask(event: FormEvent) {
    event.preventDefault();
    const clean = title.trim();
    if (!clean) {
      setTitleMissing(true);
      titleInput.current?.focus();
      return;
    }
    setAdding(true);
    const ok = await change("adding the task", async () => {
      const created = await gateway.createTask({ title: clean, description: description.trim() });
      setTasks((list) => [...(list ?? []), created].sort(byId));
    });
    setAdding(false);
    if (ok) {
      setTitle("");
      setDescription("");
      titleInput.current?.focus();
    }
  }

  async function toggle(task: Task) {
    // The box follows the click at once; it flips back if the change cannot be saved.
    const flip = (completed: boolean) =>
      setTasks((list) => list?.map((t) => (t.id === task.id ? { ...t, completed } : t)) ?? null);
    flip(!task.completed);
    const ok = await change("saving the task", async () => {
      const updated = await gateway.updateTask(task.id, { completed: !task.completed });
      setTasks((list) => list?.map((t) => (t.id === task.id ? updated : t)) ?? null);
    });
    if (!ok) flip(task.completed);
  }

  async function save(task: Task, changes: { title: string; description: string }) {
    const ok = await change("saving the task", async () => {
      const updated = await gateway.updateTask(task.id, changes);
      setTasks((list) => list?.map((t) => (t.id === task.id ? updated : t)) ?? null);
    });
    if (ok) setEditing(null);
  }

  async function remove(task: Task) {
    await change("deleting the task", async () => {
      await gateway.deleteTask(task.id);
      setTasks((list) => list?.filter((t) => t.id !== task.id) ?? null);
      setToast({
        message: `Deleted “${task.title}”.`,
        undo: () => {
          setToast(null);
          void change("restoring the task", async () => {
            const restored = await gateway.createTask({
              title: task.title,
              description: task.description,
              completed: task.completed,
            });
            setTasks((list) => [...(list ?? []), restored].sort(byId));
          });
        },
      });
    });
  }

  async function signOut() {
    setSigningOut(true);
    try {
      await onSignOut();
    } finally {
      setSigningOut(false);
    }
  }

  async function signOutEverywhere() {
    setSigningOut(true);
    try {
      if (!(await onSignOutEverywhere())) {
        setUnavailable(false);
        setProblem("We couldn't sign you out everywhere. Please try again.");
      }
    } finally {
      setSigningOut(false);
    }
  }

  const visible = (tasks ?? []).filter((t) =>
    filter === "all" ? true : filter === "active" ? !t.completed : t.completed,
  );
  const activeCount = (tasks ?? []).filter((t) => !t.completed).length;
  const doneCount = (tasks ?? []).length - activeCount;

  return (
    <div className="shell">
      <header className="topbar">
        <p className="brand">
          <span className="brand-mark" aria-hidden="true">
            ▦
          </span>{" "}
          Portcullis Tasks
        </p>
        <div className="who">
          <span className="who-text">
            <span>
              Signed in as <strong>{user.name || user.email}</strong>
            </span>
            {user.name && user.name !== user.email && <span className="muted small">{user.email}</span>}
            <button
              type="button"
              className="link small"
              onClick={() => void signOutEverywhere()}
              disabled={signingOut}
            >
              Sign out everywhere
            </button>
          </span>
          <button type="button" onClick={() => void signOut()} disabled={signingOut}>
            Sign out
          </button>
        </div>
      </header>

      <main className="content">
        <h1>Your tasks</h1>

        <form className="card new-task" aria-label="New task" onSubmit={addTask}>
          <label className="field">
            <span>Title</span>
            <input
              ref={titleInput}
              value={title}
              maxLength={200}
              placeholder="What needs doing?"
              aria-invalid={titleMissing}
              onChange={(e) => {
                setTitle(e.target.value);
                setTitleMissing(false);
              }}
            />
          </label>
          {titleMissing && (
            <p className="error field-error" role="alert">
              A task needs a title.
            </p>
          )}
          <label className="field">
            <span>
              Description <span className="muted">(optional)</span>
            </span>
            <textarea
              value={description}
              rows={2}
              maxLength={2000}
              placeholder="Details, links, notes"
              onChange={(e) => setDescription(e.target.value)}
            />
          </label>
          <div className="row end">
            <button type="submit" className="primary" aria-busy={adding} disabled={adding}>
              Add task
            </button>
          </div>
        </form>

        {problem && (
          <div className="banner" role="alert">
            <p>{problem}</p>
            <button type="button" onClick={() => void load()}>
              Try again
            </button>
          </div>
        )}

        <div className="toolbar">
          <div className="filters" role="group" aria-label="Filter">
            {FILTERS.map((f) => (
              <button
                key={f.value}
                type="button"
                aria-pressed={filter === f.value}
                className={filter === f.value ? "chip on" : "chip"}
                onClick={() => setFilter(f.value)}
              >
                {f.label}
              </button>
            ))}
          </div>
          {tasks && (
            <p className="muted counts" aria-live="polite">
              {activeCount} active · {doneCount} completed
            </p>
          )}
        </div>

        {tasks === null ? (
          problem ? null : (
            <ul className="tasks loading" aria-busy="true" aria-label="Loading tasks">
              {[0, 1, 2].map((i) => (
                <li key={i} className="task skeleton" />
              ))}
            </ul>
          )
        ) : visible.length === 0 ? (
          <p className="empty">{EMPTY[filter]}</p>
        ) : (
          <ul className="tasks" aria-label="Tasks">
            {visible.map((task) =>
              editing === task.id ? (
                <li key={task.id} className="task editing">
                  <EditTask
                    task={task}
                    onSave={(changes) => void save(task, changes)}
                    onCancel={() => setEditing(null)}
                  />
                </li>
              ) : (
                <li key={task.id} className={task.completed ? "task done" : "task"}>
                  <label className="check">
                    <input type="checkbox" checked={task.completed} onChange={() => void toggle(task)} />
                    <span className="task-title" id={`task-${task.id}`}>
                      {task.title}
                    </span>
                  </label>
                  {task.description && <p className="task-desc">{task.description}</p>}
                  <div className="task-actions">
                    <button type="button" aria-describedby={`task-${task.id}`} onClick={() => setEditing(task.id)}>
                      Edit
                    </button>
                    <button
                      type="button"
                      className="danger"
                      aria-describedby={`task-${task.id}`}
                      onClick={() => void remove(task)}
                    >
                      Delete
                    </button>
                  </div>
                </li>
              ),
            )}
          </ul>
        )}

        {isAdmin && <AdminPanel stats={stats} failed={statsFailed} />}

        {mode === "edge" ? (
          <p className="footnote muted">
            Every call from this page goes to Portcullis on this origin with Better Auth&apos;s signed
            session cookie, and no token code runs here; the task service only sees the verified user id.
          </p>
        ) : (
          <p className="footnote muted">
            Every call from this page goes to Portcullis at <code>{gatewayUrl}</code> with a short-lived
            JWT from Better Auth; the task service only sees the verified user id.{" "}
            <a href="/token">See your JWT</a>.
          </p>
        )}
      </main>

      {toast && (
        <div className="toast" role="status">
          <span>{toast.message}</span>
          {toast.undo && (
            <button type="button" className="link" onClick={toast.undo}>
              Undo
            </button>
          )}
        </div>
      )}
    </div>
  );
}

function EditTask({
  task,
  onSave,
  onCancel,
}: {
  task: Task;
  onSave: (changes: { title: string; description: string }) => void;
  onCancel: () => void;
}) {
  const [title, setTitle] = useState(task.title);
  const [description, setDescription] = useState(task.description);
  const [missing, setMissing] = useState(false);

  function submit(event: FormEvent) {
    event.preventDefault();
    const clean = title.trim();
    if (!clean) {
      setMissing(true);
      return;
    }
    onSave({ title: clean, description: description.trim() });
  }

  function onKeyDown(event: KeyboardEvent) {
    if (event.key === "Escape") onCancel();
  }

  return (
    <form className="edit" aria-label="Edit task" onSubmit={submit} onKeyDown={onKeyDown}>
      <label className="field">
        <span>Title</span>
        <input
          autoFocus
          value={title}
          maxLength={200}
          aria-invalid={missing}
          onChange={(e) => {
            setTitle(e.target.value);
            setMissing(false);
          }}
        />
      </label>
      {missing && (
        <p className="error" role="alert">
          A task needs a title.
        </p>
      )}
      <label className="field">
        <span>Description</span>
        <textarea value={description} rows={2} maxLength={2000} onChange={(e) => setDescription(e.target.value)} />
      </label>
      <div className="row end">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="primary">
          Save
        </button>
      </div>
    </form>
  );
}
