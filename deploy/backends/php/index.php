<?php
// Front controller of the task API: `php -S` hands every request to this file.
// Storage is SQLite through PDO; every query carries `user_id = ?`, so another user's
// task answers 404 exactly like a task that does not exist.
declare(strict_types=1);

require __DIR__ . '/identity.php';

function db(): PDO
{
    static $pdo = null;
    if ($pdo === null) {
        $pdo = new PDO('sqlite:' . (getenv('TASKS_DB') ?: __DIR__ . '/tasks.sqlite3'));
        $pdo->setAttribute(PDO::ATTR_ERRMODE, PDO::ERRMODE_EXCEPTION);
        $pdo->setAttribute(PDO::ATTR_DEFAULT_FETCH_MODE, PDO::FETCH_ASSOC);
        $pdo->exec('PRAGMA busy_timeout = 5000');
        $pdo->exec('CREATE TABLE IF NOT EXISTS tasks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL,
            title TEXT NOT NULL,
            completed INTEGER NOT NULL DEFAULT 0)');
        $pdo->exec('CREATE INDEX IF NOT EXISTS tasks_user ON tasks (user_id)');
        // What reached this process under /api, for the end-to-end tests.
        $pdo->exec('CREATE TABLE IF NOT EXISTS api_requests (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            method TEXT NOT NULL, path TEXT NOT NULL, user_id_header TEXT)');
    }
    return $pdo;
}

function respond(int $status, $body = null): void
{
    http_response_code($status);
    if ($body !== null) {
        header('Content-Type: application/json');
        echo json_encode($body);
    }
}

function task_json(array $row): array
{
    return ['id' => (int) $row['id'], 'user_id' => $row['user_id'],
            'title' => $row['title'], 'completed' => (bool) $row['completed']];
}

function owned_task(string $user, int $id): ?array
{
    $q = db()->prepare('SELECT * FROM tasks WHERE id = ? AND user_id = ?');
    $q->execute([$id, $user]);
    $row = $q->fetch();
    return $row === false ? null : $row;
}

function json_body(): ?array
{
    $body = json_decode(file_get_contents('php://input') ?: '{}', true);
    return is_array($body) ? $body : null;
}

function tasks_api(string $user, string $method, string $rest): void
{
    if ($rest === '') {
        if ($method === 'GET') {
            $q = db()->prepare('SELECT * FROM tasks WHERE user_id = ? ORDER BY id');
            $q->execute([$user]);
            respond(200, array_map('task_json', $q->fetchAll()));
        } elseif ($method === 'POST') {
            $body = json_body();
            if (!is_string($body['title'] ?? null) || trim($body['title']) === '') {
                respond(400, ['error' => 'title is required']);
                return;
            }
            $q = db()->prepare('INSERT INTO tasks (user_id, title, completed) VALUES (?, ?, ?)');
            $q->execute([$user, $body['title'], empty($body['completed']) ? 0 : 1]);
            $id = (int) db()->lastInsertId();
            header("Location: /api/tasks/$id");
            respond(201, task_json(owned_task($user, $id)));
        } else {
            header('Allow: GET, POST');
            respond(405, ['error' => 'method not allowed']);
        }
        return;
    }

    if (!preg_match('#^/([1-9][0-9]{0,17})$#', $rest, $m) || ($task = owned_task($user, (int) $m[1])) === null) {
        respond(404, ['error' => 'not found']);
        return;
    }
    $id = (int) $m[1];
    if ($method === 'GET') {
        respond(200, task_json($task));
    } elseif ($method === 'PATCH') {
        $body = json_body();
        if ($body === null) {
            respond(400, ['error' => 'the body must be a JSON object']);
            return;
        }
        if (array_key_exists('title', $body)) {
            if (!is_string($body['title']) || trim($body['title']) === '') {
                respond(400, ['error' => 'title must be a non-empty string']);
                return;
            }
            $task['title'] = $body['title'];
        }
        if (array_key_exists('completed', $body)) {
            if (!is_bool($body['completed'])) {
                respond(400, ['error' => 'completed must be true or false']);
                return;
            }
            $task['completed'] = $body['completed'] ? 1 : 0;
        }
        $q = db()->prepare('UPDATE tasks SET title = ?, completed = ? WHERE id = ? AND user_id = ?');
        $q->execute([$task['title'], $task['completed'], $id, $user]);
        respond(200, task_json($task));
    } elseif ($method === 'DELETE') {
        db()->prepare('DELETE FROM tasks WHERE id = ? AND user_id = ?')->execute([$id, $user]);
        respond(204);
    } else {
        header('Allow: GET, PATCH, DELETE');
        respond(405, ['error' => 'method not allowed']);
    }
}

$method = $_SERVER['REQUEST_METHOD'];
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?: '/';

if ($path === '/healthz') {
    db()->query('SELECT 1');
    respond(200, ['status' => 'ok']);
} elseif ($path === '/__stats') {
    $count = (int) db()->query('SELECT COUNT(*) FROM api_requests')->fetchColumn();
    $recent = db()->query('SELECT method, path, user_id_header FROM
        (SELECT * FROM api_requests ORDER BY seq DESC LIMIT 50) ORDER BY seq')->fetchAll();
    respond(200, ['api_requests' => $count, 'recent' => $recent]);
} elseif ($path === '/api/tasks' || str_starts_with($path, '/api/tasks/')) {
    db()->prepare('INSERT INTO api_requests (method, path, user_id_header) VALUES (?, ?, ?)')
        ->execute([$method, $path, $_SERVER['HTTP_X_USER_ID'] ?? null]);
    $user = gateway_user();
    if ($user !== null) {
        tasks_api($user, $method, substr($path, strlen('/api/tasks')));
    }
} else {
    respond(404, ['error' => 'not found']);
}
