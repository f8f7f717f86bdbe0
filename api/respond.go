package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sluice-gw/sluice/raftstore"
)

// envelope is Convoy's response shape: {"status": bool, "message": str, "data": ...}.
type envelope struct {
	Status  bool   `json:"status"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

// pageData is a list response: data.content + data.pagination.
type pageData struct {
	Content    any        `json:"content"`
	Pagination pagination `json:"pagination"`
}

type pagination struct {
	PerPage        int    `json:"per_page"`
	HasNextPage    bool   `json:"has_next_page"`
	NextPageCursor string `json:"next_page_cursor"`
}

func writeJSON(w http.ResponseWriter, code int, msg string, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // show event data as published, not with \u003c escapes
	enc.Encode(envelope{Status: code < 400, Message: msg, Data: data})
}

// apiError is an error with the HTTP status it maps to and a message for the client.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func errf(code int, format string, args ...any) error {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

// writeErr maps err to a status. Unknown errors are logged and reported as 500 without detail.
func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		writeJSON(w, ae.code, ae.msg, nil)
	case errors.Is(err, raftstore.ErrNotFound):
		writeJSON(w, http.StatusNotFound, trimPrefix(err), nil)
	case errors.Is(err, raftstore.ErrTooLarge):
		writeJSON(w, http.StatusRequestEntityTooLarge, "the write is too large for one log entry (for a publish: it matches too many endpoints; split it by owner_id or endpoint_id)", nil)
	case errors.Is(err, raftstore.ErrExists):
		writeJSON(w, http.StatusConflict, trimPrefix(err), nil)
	case errors.Is(err, raftstore.ErrDiskFull):
		w.Header().Set("Retry-After", "30")
		writeJSON(w, http.StatusInsufficientStorage, "the node's disk is nearly full: new events are refused until space is freed (nothing was stored; retry later)", nil)
	case errors.Is(err, raftstore.ErrNotLeader), errors.Is(err, raftstore.ErrClosed):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, "no leader can commit this write right now; retry", nil)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		writeJSON(w, http.StatusGatewayTimeout, "timed out waiting for the write to commit; its outcome is unknown (retry with the same idempotency_key)", nil)
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusInternalServerError, "internal error", nil)
	}
}

func trimPrefix(err error) string {
	return strings.TrimPrefix(err.Error(), "raftstore: ")
}

// decodeBody reads one JSON value from the request into v. Unknown fields are refused (they usually
// hide a typo), as are trailing data, bodies over the limit (413) and non-JSON bodies.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxPayloadBytes)
	return decodeJSON(body, v)
}

func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return jsonError(err)
		}
		return errf(http.StatusBadRequest, "invalid JSON: unexpected data after the request object")
	}
	return nil
}

func jsonError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return errf(http.StatusRequestEntityTooLarge, "request body exceeds the %d-byte limit", mbe.Limit)
	case errors.As(err, &syn):
		return errf(http.StatusBadRequest, "invalid JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		return errf(http.StatusBadRequest, "invalid JSON: field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.EOF):
		return errf(http.StatusBadRequest, "invalid JSON: empty request body")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errf(http.StatusBadRequest, "invalid JSON: body ends early")
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		// encoding/json has no typed error for this; its message names the field.
		return errf(http.StatusBadRequest, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return errf(http.StatusBadRequest, "invalid JSON: %v", err)
}

// recoverer turns a handler panic into a 500 so no panic reaches a client.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
				writeJSON(w, http.StatusInternalServerError, "internal error", nil)
			}
		}()
		next.ServeHTTP(w, r)
	})
}
