package gate

import (
	"net/http"
	"strconv"

	"go.uber.org/zap"
)

// writePage answers a browser with a plain HTML page. title and msg are
// constants or escaped by the caller: nothing from the request is echoed
// unescaped.
func writePage(w http.ResponseWriter, status int, title, msg string) {
	body := "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">" +
		"<title>" + title + "</title></head><body><h1>" + title + "</h1><p>" + msg + "</p></body></html>\n"
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// writeUnavailable answers 503 while the provider or storage cannot be
// reached.
func writeUnavailable(w http.ResponseWriter, r *http.Request) error {
	drainBody(r)
	w.Header().Set("Retry-After", retryAfterUnavailable)
	writePage(w, http.StatusServiceUnavailable, "Sign-in unavailable", "Sign-in is unavailable for a moment. Try again shortly.")
	return nil
}

func zapIssuer(iss string) zap.Field { return zap.String("issuer", iss) }

// zapErr logs an error's text; the errors of oauth2 and go-oidc carry
// the provider's answer, never the code or tokens the gate sent.
func zapErr(err error) zap.Field { return zap.Error(err) }
