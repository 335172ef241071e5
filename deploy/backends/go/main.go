// The task API on net/http, standard library only. Tasks live in memory (a map behind a
// mutex): Go's standard library has no SQLite driver, and the point here is the
// identity boundary, not storage. Every lookup is filtered by the caller's user id.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
)

type task struct {
	ID        int64  `json:"id"`
	UserID    string `json:"user_id"`
	Title     string `json:"title"`
	Completed bool   `json:"completed"`
}

type store struct {
	mu     sync.Mutex
	nextID int64
	tasks  map[int64]*task
}

// owned returns the task only when it belongs to user: another user's task is
// indistinguishable from a missing one.
func (s *store) owned(user string, id int64) (*task, bool) {
	t, ok := s.tasks[id]
	if !ok || t.UserID != user {
		return nil, false
	}
	return t, true
}

type apiRequest struct {
	Method       string  `json:"method"`
	Path         string  `json:"path"`
	UserIDHeader *string `json:"user_id_header"`
}

// stats records what reached this process under /api, for the end-to-end tests.
type stats struct {
	mu       sync.Mutex
	requests []apiRequest
}

func (st *stats) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entry := apiRequest{Method: r.Method, Path: r.URL.Path}
		if v := r.Header.Values("X-User-Id"); len(v) > 0 {
			joined := strings.Join(v, ",")
			entry.UserIDHeader = &joined
		}
		st.mu.Lock()
		st.requests = append(st.requests, entry)
		st.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, body interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
}

func invalid(w http.ResponseWriter, message string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": message})
}

func (s *store) tasksAPI(w http.ResponseWriter, r *http.Request) {
	user := userID(r)
	rest := strings.TrimPrefix(r.URL.Path, "/api/tasks")
	s.mu.Lock()
	defer s.mu.Unlock()

	if rest == "" {
		switch r.Method {
		case http.MethodGet:
			list := []*task{}
			for _, t := range s.tasks {
				if t.UserID == user {
					list = append(list, t)
				}
			}
			sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
			writeJSON(w, http.StatusOK, list)
		case http.MethodPost:
			var body struct {
				Title     *string `json:"title"`
				Completed bool    `json:"completed"`
			}
			if json.NewDecoder(r.Body).Decode(&body) != nil || body.Title == nil || strings.TrimSpace(*body.Title) == "" {
				invalid(w, "title is required")
				return
			}
			s.nextID++
			t := &task{ID: s.nextID, UserID: user, Title: *body.Title, Completed: body.Completed}
			s.tasks[t.ID] = t
			w.Header().Set("Location", "/api/tasks/"+strconv.FormatInt(t.ID, 10))
			writeJSON(w, http.StatusCreated, t)
		default:
			w.Header().Set("Allow", "GET, POST")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		}
		return
	}

	id, err := strconv.ParseInt(strings.TrimPrefix(rest, "/"), 10, 64)
	if !strings.HasPrefix(rest, "/") || err != nil || id < 1 {
		notFound(w)
		return
	}
	t, ok := s.owned(user, id)
	if !ok {
		notFound(w)
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, t)
	case http.MethodPatch:
		var body struct {
			Title     *string `json:"title"`
			Completed *bool   `json:"completed"`
		}
		if json.NewDecoder(r.Body).Decode(&body) != nil {
			invalid(w, "the body must be a JSON object")
			return
		}
		if body.Title != nil {
			if strings.TrimSpace(*body.Title) == "" {
				invalid(w, "title must be a non-empty string")
				return
			}
			t.Title = *body.Title
		}
		if body.Completed != nil {
			t.Completed = *body.Completed
		}
		writeJSON(w, http.StatusOK, t)
	case http.MethodDelete:
		delete(s.tasks, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, PATCH, DELETE")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
	}
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8000"
	}
	s := &store{tasks: map[int64]*task{}}
	st := &stats{}
	api := st.record(requireUser(http.HandlerFunc(s.tasksAPI)))

	mux := http.NewServeMux()
	mux.Handle("/api/tasks", api)
	mux.Handle("/api/tasks/", api)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/__stats", func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		recent := st.requests
		if len(recent) > 50 {
			recent = recent[len(recent)-50:]
		}
		writeJSON(w, http.StatusOK, map[string]interface{}{"api_requests": len(st.requests), "recent": recent})
	})

	// Loopback only: the gateway is the one client this process may ever have.
	addr := "127.0.0.1:" + port
	log.Printf("task API listening on http://%s", addr)
	log.Fatal(http.ListenAndServe(addr, mux))
}
