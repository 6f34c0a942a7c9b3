//go:build !race

package grants

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// No user enumeration: with no users in the config, an unknown user costs a real bcrypt
// at the cost of `caddy hash-password` and `caddy oauth user add` (14).
// This is the one test that pays for a cost-14 dummy hash; under -race
// that takes tens of seconds, so it is built only without -race (every
// other test uses a cheap stand-in).
func TestUnknownUserRealDummyHash(t *testing.T) {
	cheap := dummyHashFor
	dummyHashFor = realDummyHashFor
	defer func() { dummyHashFor = cheap }()
	e := newEngine(t, withConfig(func(c *Config) { c.Users = nil }))
	u, err := e.users.Authenticate(context.Background(), "mallory", dummyPassword)
	if u != nil || !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("unknown user with the dummy's own password: %v, %v", u, err)
	}
	if cost, err := bcrypt.Cost(e.users.dummy()); err != nil || cost != DefaultPasswordCost {
		t.Fatalf("dummy hash cost = %d, %v; want %d", cost, err, DefaultPasswordCost)
	}
}
