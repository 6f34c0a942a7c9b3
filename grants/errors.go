package grants

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"
)

// Error is a protocol error: an RFC 6749 §5.2 (or extension) error code,
// a description safe to show the client, and the HTTP status to answer
// with. Handlers return it; WriteError renders it.
type Error struct {
	Code        string
	Description string
	Status      int
	// Challenge, when set, is sent as WWW-Authenticate (for invalid_client
	// after HTTP Basic authentication was tried).
	Challenge string
	// Allow, when set, is sent as the Allow header (for 405 answers).
	Allow string
	// RetryAfter, when positive, is sent as Retry-After in seconds (for
	// 429 and 503 answers).
	RetryAfter int
	// cause is the server-side failure behind the error (a storage
	// error), for the log only: the client never sees it. An Error with
	// a cause is the server's fault and is logged at ERROR; one without
	// is the client's and stays at DEBUG.
	cause error
}

// Error returns the code and description the client sees; the cause,
// if any, is reached with errors.Unwrap.
func (e *Error) Error() string { return e.Code + ": " + e.Description }

// Unwrap returns the server-side cause, or nil.
func (e *Error) Unwrap() error { return e.cause }

// withCause returns a copy of e that carries cause, so that shared
// errors (errUnavailable, errServer) stay unchanged.
func (e *Error) withCause(cause error) *Error {
	c := *e
	c.cause = cause
	return &c
}

// Error codes used by the token endpoint (RFC 6749 §5.2, RFC 8707 §2,
// RFC 6749 §4.1.2.1).
const (
	CodeInvalidRequest         = "invalid_request"
	CodeInvalidClient          = "invalid_client"
	CodeInvalidGrant           = "invalid_grant"
	CodeUnauthorizedClient     = "unauthorized_client"
	CodeUnsupportedGrantType   = "unsupported_grant_type"
	CodeInvalidScope           = "invalid_scope"
	CodeInvalidTarget          = "invalid_target"
	CodeTemporarilyUnavailable = "temporarily_unavailable"
	CodeServerError            = "server_error"
)

func errRequest(desc string) *Error {
	return &Error{Code: CodeInvalidRequest, Description: desc, Status: http.StatusBadRequest}
}

func errWithStatus(code string, status int, desc string) *Error {
	return &Error{Code: code, Description: desc, Status: status}
}

func errCode(code, desc string) *Error {
	return &Error{Code: code, Description: desc, Status: http.StatusBadRequest}
}

// RetryAfterUnavailable is the Retry-After, in seconds, of the 503
// temporarily_unavailable answer to a request that storage failed: long
// enough that clients do not hammer a server with a full disk, short
// enough that a passing fault (a database being reopened) costs little.
const RetryAfterUnavailable = 5

// errUnavailable is what a storage failure becomes: the client may retry,
// and nothing about the failure leaks.
var errUnavailable = &Error{
	Code:        CodeTemporarilyUnavailable,
	Description: "the authorization server cannot complete the request right now; retry later",
	Status:      http.StatusServiceUnavailable,
	RetryAfter:  RetryAfterUnavailable,
}

// errServer is for failures that are the server's own fault (a signing
// key that cannot sign). It never carries internal detail.
var errServer = &Error{
	Code:        CodeServerError,
	Description: "the authorization server failed to complete the request",
	Status:      http.StatusInternalServerError,
}

// refused logs a refusal. One the client caused (no cause) is logged at
// DEBUG as msg with the code and description, as every refusal was; one
// the server caused goes to logFailure.
func (e *Engine) refused(ctx context.Context, endpoint, msg string, oerr *Error) {
	if oerr.cause != nil {
		e.logFailure(ctx, endpoint, oerr.Code, oerr.cause)
		return
	}
	e.debug(ctx, msg, zap.String("error", oerr.Code), zap.String("reason", oerr.Description))
}

// logFailure logs a request that failed through no fault of the client's
// (storage failed, a key could not sign) at ERROR, with the cause and the
// request id, so that a full disk leaves a trace in the log. Under load
// the same failure hits every request, so the line is written at most
// once a second per endpoint and cause, with a count of those held back
// (lograte). code is the error the client got.
func (e *Engine) logFailure(ctx context.Context, endpoint, code string, cause error) {
	if errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded) {
		// The client went away (or the request timed out) before storage
		// was reached: nothing failed on the server's side.
		e.debug(ctx, "request ended before storage was reached", zap.String("endpoint", endpoint), zap.Error(cause))
		return
	}
	msg := "oauth request failed"
	if code == CodeTemporarilyUnavailable {
		msg = "oauth storage unavailable"
	}
	fields := []zap.Field{zap.String("endpoint", endpoint), zap.Error(cause)}
	if id := RequestID(ctx); id != "" {
		fields = append(fields, zap.String("request_id", id))
	}
	e.failures.Error(msg+"\x00"+endpoint+"\x00"+cause.Error(), msg, fields...)
}

// noStore marks a response as uncacheable, as RFC 6749 §5.1 requires for
// anything that carries a token and we choose for errors too.
func noStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// WriteError renders a protocol error as the RFC 6749 §5.2 JSON body.
func WriteError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	if e.Challenge != "" {
		h.Set("WWW-Authenticate", e.Challenge)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.Allow != "" {
		h.Set("Allow", e.Allow)
	}
	body := struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, e.Description}
	writeJSON(w, e.Status, body)
}

// answerJSON serves a JSON endpoint: handle's answer with 200, or its
// refusal, logged (refused) as msg for endpoint.
func answerJSON[T any](e *Engine, w http.ResponseWriter, r *http.Request, endpoint, msg string, handle func(http.ResponseWriter, *http.Request) (T, *Error)) {
	resp, oerr := handle(w, r)
	if oerr != nil {
		e.refused(r.Context(), endpoint, msg, oerr)
		WriteError(w, oerr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// writeJSON writes v as an uncacheable JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	buf, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		buf = []byte(`{"error":"server_error"}`)
	}
	h := w.Header()
	noStore(h)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(buf)))
	w.WriteHeader(status)
	_, _ = w.Write(buf)
}
