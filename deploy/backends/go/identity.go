package main

import (
	"context"
	"net/http"
	"strings"
)

type userKey struct{}

// requireUser is the identity boundary: Portcullis verified the caller's JWT and set
// exactly one X-User-Id. Without one, the request stops here with 401.
func requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		values := r.Header.Values("X-User-Id")
		if len(values) != 1 || strings.TrimSpace(values[0]) == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or ambiguous X-User-Id"})
			return
		}
		ctx := context.WithValue(r.Context(), userKey{}, strings.TrimSpace(values[0]))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func userID(r *http.Request) string { return r.Context().Value(userKey{}).(string) }
