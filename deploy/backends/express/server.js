// The task API on Express. Tasks live in memory (a Map): the point here is the identity
// boundary, not storage. Every lookup is filtered by req.userId, so another user's task
// answers 404 exactly like a task that does not exist.
const express = require('express');
const requireUser = require('./identity');

const tasks = new Map();
let nextId = 1;
const apiRequests = []; // what reached this process under /api, for the end-to-end tests

function ownedTask(req) {
  const task = tasks.get(Number(req.params.id));
  return task && task.user_id === req.userId ? task : undefined;
}

const api = express.Router();
api.use((req, res, next) => {
  apiRequests.push({ method: req.method, path: req.originalUrl.split('?')[0], user_id_header: req.get('X-User-Id') ?? null });
  next();
});
api.use(requireUser);
api.use(express.json());

api.get('/tasks', (req, res) => {
  res.json([...tasks.values()].filter((t) => t.user_id === req.userId));
});

api.post('/tasks', (req, res) => {
  const { title, completed } = req.body ?? {};
  if (typeof title !== 'string' || !title.trim()) {
    return res.status(400).json({ error: 'title is required' });
  }
  const task = { id: nextId++, user_id: req.userId, title, completed: completed === true };
  tasks.set(task.id, task);
  res.status(201).location(`/api/tasks/${task.id}`).json(task);
});

api.get('/tasks/:id', (req, res) => {
  const task = ownedTask(req);
  return task ? res.json(task) : res.status(404).json({ error: 'not found' });
});

api.patch('/tasks/:id', (req, res) => {
  const task = ownedTask(req);
  if (!task) return res.status(404).json({ error: 'not found' });
  const body = req.body ?? {};
  if ('title' in body && (typeof body.title !== 'string' || !body.title.trim())) {
    return res.status(400).json({ error: 'title must be a non-empty string' });
  }
  if ('completed' in body && typeof body.completed !== 'boolean') {
    return res.status(400).json({ error: 'completed must be true or false' });
  }
  if ('title' in body) task.title = body.title;
  if ('completed' in body) task.completed = body.completed;
  res.json(task);
});

api.delete('/tasks/:id', (req, res) => {
  const task = ownedTask(req);
  if (!task) return res.status(404).json({ error: 'not found' });
  tasks.delete(task.id);
  res.status(204).end();
});

api.use((req, res) => res.status(404).json({ error: 'not found' }));

const app = express();
app.disable('x-powered-by');
app.get('/healthz', (req, res) => res.json({ status: 'ok' }));
app.get('/__stats', (req, res) => res.json({ api_requests: apiRequests.length, recent: apiRequests.slice(-50) }));
app.use('/api', api);
app.use((req, res) => res.status(404).json({ error: 'not found' }));

const port = Number(process.env.PORT || 8000);
// Loopback only: the gateway is the one client this process may ever have.
app.listen(port, '127.0.0.1', () => console.log(`task API listening on http://127.0.0.1:${port}`));
