package grants

import (
	"context"
	"fmt"
)

// Front is what the HTTP server in front of the engine knows of a
// request, passed in its context (WithFront) in one value.
type Front struct {
	// ClientIP is the client's address as the server resolved it from
	// the connection and the proxies it trusts: the sign-in throttle
	// counts it, and the loopback rule sees through a local proxy with
	// it. Empty: the server could not tell.
	ClientIP string
	// RequestID makes the request's id in the server's access log, so
	// that the engine's log lines can be matched with it. Its String is
	// called only when a line is written: a server that makes ids lazily
	// (Caddy) need not make one for every request. Nil for none.
	RequestID fmt.Stringer
}

type frontKey struct{}

// WithFront tags a request's context with what the server knows of it.
func WithFront(ctx context.Context, f *Front) context.Context {
	return context.WithValue(ctx, frontKey{}, f)
}

func frontOf(ctx context.Context) *Front {
	f, _ := ctx.Value(frontKey{}).(*Front)
	return f
}

// RequestID is the request's id in the front end's access log, or "".
func RequestID(ctx context.Context) string {
	if f := frontOf(ctx); f != nil && f.RequestID != nil {
		return f.RequestID.String()
	}
	return ""
}

// clientIPOf is the client address the front end resolved, or "".
func clientIPOf(ctx context.Context) string {
	if f := frontOf(ctx); f != nil {
		return f.ClientIP
	}
	return ""
}
