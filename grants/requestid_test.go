package grants

import (
	"context"
	"testing"
)

type countingID struct{ n *int }

func (id countingID) String() string { *id.n++; return "lazy-id" }

// TestRequestID: an id given as is, or made on first read (Caddy's
// request uuid costs a random read and lands in the access log, so it is
// made only when a line is logged).
func TestRequestID(t *testing.T) {
	if id, ok := RequestID(WithRequestID(context.Background(), "abc")); !ok || id != "abc" {
		t.Errorf("WithRequestID: %q %v", id, ok)
	}
	n := 0
	ctx := WithLazyRequestID(context.Background(), countingID{&n})
	if n != 0 {
		t.Fatal("the lazy id was made before it was read")
	}
	if id, ok := RequestID(ctx); !ok || id != "lazy-id" || n != 1 {
		t.Errorf("WithLazyRequestID: %q %v, made %d times", id, ok, n)
	}
	if id, ok := RequestID(context.Background()); ok || id != "" {
		t.Errorf("no id: %q %v", id, ok)
	}
}
