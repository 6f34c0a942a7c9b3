package grants

import (
	"encoding/json"
	"net/http"
	"strconv"
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
	// 429 answers).
	RetryAfter int
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

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

// errUnavailable is what a storage failure becomes: the client may retry,
// and nothing about the failure leaks.
var errUnavailable = &Error{
	Code:        CodeTemporarilyUnavailable,
	Description: "the authorization server cannot complete the request right now; retry later",
	Status:      http.StatusServiceUnavailable,
}

// errServer is for failures that are the server's own fault (a signing
// key that cannot sign). It never carries internal detail.
var errServer = &Error{
	Code:        CodeServerError,
	Description: "the authorization server failed to complete the request",
	Status:      http.StatusInternalServerError,
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
