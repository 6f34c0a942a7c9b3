//go:build !race

package grants

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// an unknown user costs a real bcrypt at the cost of
// `caddy hash-password`. This is the one test that pays for the cost-14
// dummy hash; under -race that takes tens of seconds, so it is built only
// without -race (every other test uses a cheap stand-in).
func TestUnknownUserRealDummyHash(t *testing.T) {
	cheap := dummyPasswordHash
	dummyPasswordHash = realDummyPasswordHash
	defer func() { dummyPasswordHash = cheap }()
	e := siNewTestEngine(t, nil)
	u, err := e.Users.Authenticate(context.Background(), "mallory", dummyPassword)
	if u != nil || !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("unknown user with the dummy's own password: %v, %v", u, err)
	}
	if cost, err := bcrypt.Cost(dummyPasswordHash()); err != nil || cost != 14 {
		t.Fatalf("dummy hash cost = %d, %v; want 14", cost, err)
	}
}
