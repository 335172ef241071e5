<?php
// The identity boundary: Portcullis verified the caller's JWT and set exactly one
// X-User-Id. Without one, the request stops here with 401.
declare(strict_types=1);

function gateway_user(): ?string
{
    $user = trim($_SERVER['HTTP_X_USER_ID'] ?? '');
    if ($user === '' || str_contains($user, ',')) {
        respond(401, ['error' => 'missing or ambiguous X-User-Id']);
        return null;
    }
    return $user;
}
