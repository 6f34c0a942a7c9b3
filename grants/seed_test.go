//go:build oauthgate_bench

package grants

import (
	"context"
	"testing"
)

// TestSeedCodes: a seeded code redeems once, as one from the
// authorization endpoint does, and its second redemption fails.
func TestSeedCodes(t *testing.T) {
	st := openStore(t)
	e := newEngine(t, withStore(st))
	codes, err := SeedCodes(context.Background(), st, "c-web", "alice", testRedirect["c-web"], []string{"openid", "read"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 3 || codes[0] == codes[1] {
		t.Fatalf("SeedCodes returned %d codes, want 3 distinct ones", len(codes))
	}
	tr := redeem(e, "c-web", codes[0], "")
	if tr.status != 200 || tr.str("refresh_token") == "" || tr.str("id_token") == "" {
		t.Fatalf("redeeming a seeded code: %d %s", tr.status, tr.raw)
	}
	if tr := redeem(e, "c-web", codes[0], ""); tr.status != 400 || tr.str("error") != CodeInvalidGrant {
		t.Fatalf("second redemption of a seeded code: %d %s", tr.status, tr.raw)
	}
}
