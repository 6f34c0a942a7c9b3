//go:build oauthgate_bench

package grants

import (
	"context"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// SeedRefreshTokens stores n live refresh-token grants of subject with
// client, as the code grant would, in large transactions. It exists for
// benchmarks and soak tests of big databases (bench/seed), and returns up
// to sample of the refresh tokens so that a test can prove them live.
func SeedRefreshTokens(ctx context.Context, st storage.Store, clientID, subject string, scope []string, n, sample int, ttl time.Duration) ([]string, error) {
	const perTx = 10000
	var out []string
	exp := time.Now().Add(ttl)
	for done := 0; done < n; {
		batch := min(perTx, n-done)
		var rts []string
		err := st.Update(ctx, func(tx storage.Tx) error {
			rts = rts[:0]
			for range batch {
				handle := tokens.RandomID(16)
				fam := familyRecord{GrantID: tokens.RandomID(16), ClientID: clientID, Subject: subject, Scope: scope, AuthTime: time.Now().Unix()}
				var rt string
				rt, fam.Current = newRefreshToken(handle)
				if err := putJSON(tx, storage.KindFamilies, grantKey(handle), &fam, exp); err != nil {
					return err
				}
				rts = append(rts, rt)
			}
			return nil
		})
		if err != nil {
			return out, err
		}
		for _, t := range rts {
			if len(out) < sample {
				out = append(out, t)
			}
		}
		done += batch
	}
	return out, nil
}

// SeedCodes stores n authorization codes of subject for client, as the
// authorization endpoint would after a sign-in (no PKCE challenge, the
// redirect URI given), in large transactions, and returns them. They
// expire after CodeTTL. It exists for benchmarks of code redemption
// alone (bench/micro), without the authorization request before it.
func SeedCodes(ctx context.Context, st storage.Store, clientID, subject, redirectURI string, scope []string, n int) ([]string, error) {
	const perTx = 10000
	out := make([]string, 0, n)
	exp := time.Now().Add(CodeTTL)
	for done := 0; done < n; {
		batch := min(perTx, n-done)
		codes := make([]string, batch)
		err := st.Update(ctx, func(tx storage.Tx) error {
			for i := range codes {
				codes[i] = newSecretToken()
				cr := codeRecord{ClientID: clientID, RedirectURI: redirectURI, RedirectGiven: true,
					Scope: scope, Subject: subject, AuthTime: time.Now().Unix()}
				if err := putJSON(tx, storage.KindCodes, hashToken(codes[i]), &cr, exp); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return out, err
		}
		out = append(out, codes...)
		done += batch
	}
	return out, nil
}
