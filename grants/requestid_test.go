package grants

import (
	"context"
	"testing"
)

type countingID struct{ n *int }

func (id countingID) String() string { *id.n++; return "lazy-id" }

// TestRequestID: the front end's request id is made only when read
// (Caddy's request uuid costs a random read and lands in the access log,
// so it is made only when a line is logged).
func TestRequestID(t *testing.T) {
	if id := RequestID(WithFront(context.Background(), &Front{RequestID: RequestIDString("abc")})); id != "abc" {
		t.Errorf("RequestIDString: %q", id)
	}
	n := 0
	ctx := WithFront(context.Background(), &Front{RequestID: countingID{&n}})
	if n != 0 {
		t.Fatal("the lazy id was made before it was read")
	}
	if id := RequestID(ctx); id != "lazy-id" || n != 1 {
		t.Errorf("lazy id: %q, made %d times", id, n)
	}
	if id := RequestID(context.Background()); id != "" {
		t.Errorf("no id: %q", id)
	}
}
