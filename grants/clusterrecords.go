package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Several nodes on one store must agree on some settings. Two are kept
// in records of the store rather than trusted to the operator:
//
//   - the longest access-token lifetime any node issues (tokenLifetimeRecord),
//     which bounds how long a revocation is kept and when a rotated-out
//     key leaves the ring: a node with a short access_token_ttl that
//     revokes or rotates would otherwise forget too early the tokens
//     another node issued with a longer one;
//   - the issuer (issuerRecord): a node with another issuer on the same
//     store would redeem the others' codes and refresh their grants
//     under its own iss, and its revocations of their tokens would be
//     answered but do nothing at the others.

// tokenLifetimeRecord names the KindSecrets record holding the longest
// access_token_ttl of every node started on the store. It only grows:
// a node started later with a shorter TTL keeps it (which costs only
// retention); deleting the record resets it at the next starts.
const tokenLifetimeRecord = "token-lifetime"

// issuerRecord names the KindSecrets record holding the issuer of a
// shared store, written by the first node to start on it.
const issuerRecord = "issuer"

// lifetimeValue is tokenLifetimeRecord's value.
type lifetimeValue struct {
	// AccessTokenTTL is the longest access_token_ttl, as a Go duration
	// ("30m0s"), readable in psql.
	AccessTokenTTL string `json:"access_token_ttl"`
}

// storedLifetimeTx reads tokenLifetimeRecord; zero when it is missing.
func storedLifetimeTx(tx storage.Tx) (time.Duration, error) {
	rec, err := tx.Get(storage.KindSecrets, tokenLifetimeRecord)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v lifetimeValue
	if err := json.Unmarshal(rec.Value, &v); err != nil {
		return 0, fmt.Errorf("storage record %s/%s is malformed (delete it; every node writes it again at start): %w", storage.KindSecrets, tokenLifetimeRecord, err)
	}
	d, err := time.ParseDuration(v.AccessTokenTTL)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("storage record %s/%s has a bad access_token_ttl %q (delete it; every node writes it again at start)", storage.KindSecrets, tokenLifetimeRecord, v.AccessTokenTTL)
	}
	return d, nil
}

// tokenLifetimeTx is the longest time an access or ID token issued by
// any node on the store lives: this engine's access_token_ttl, or the
// longer one another node recorded. Horizons written in tx use it, read
// in the same transaction, so a node started with a longer TTL an
// instant ago counts.
func (e *Engine) tokenLifetimeTx(tx storage.Tx) (time.Duration, error) {
	d, err := storedLifetimeTx(tx)
	if err != nil {
		return 0, err
	}
	return max(d, e.accessTokenTTL), nil
}

// revocationHorizonTx is until when a token issued by any node up to
// now can verify: how long revocations written in tx are kept.
func (e *Engine) revocationHorizonTx(tx storage.Tx, now time.Time) (time.Time, error) {
	d, err := e.tokenLifetimeTx(tx)
	if err != nil {
		return time.Time{}, err
	}
	return now.Add(d + verifierLeeway), nil
}

// startClusterRecords records this engine's access_token_ttl when it is
// longer than the stored one, and, on a shared store, the issuer, or
// refuses to start when another is recorded.
func (e *Engine) startClusterRecords(ctx context.Context, st storage.Store) error {
	return st.Update(ctx, func(tx storage.Tx) error {
		if e.sharedStore {
			if err := checkIssuerTx(tx, e.issuer); err != nil {
				return err
			}
		}
		d, err := storedLifetimeTx(tx)
		if err != nil || d >= e.accessTokenTTL {
			// Unchanged: no write, so that starting does not conflict
			// with the other nodes' transactions that read it.
			return err
		}
		b, err := json.Marshal(lifetimeValue{AccessTokenTTL: e.accessTokenTTL.String()})
		if err != nil {
			return err
		}
		return tx.Put(storage.KindSecrets, tokenLifetimeRecord, storage.Record{Value: b})
	})
}

// checkIssuerTx records iss as the store's issuer, or fails when the
// store has another.
func checkIssuerTx(tx storage.Tx, iss string) error {
	rec, err := tx.Get(storage.KindSecrets, issuerRecord)
	if errors.Is(err, storage.ErrNotFound) {
		return tx.Put(storage.KindSecrets, issuerRecord, storage.Record{Value: []byte(iss)})
	}
	if err != nil {
		return err
	}
	if stored := string(rec.Value); stored != iss {
		return fmt.Errorf("%w: this node's issuer is %q, but the shared storage belongs to issuer %q; every node on one storage needs the same issuer. To change the issuer on purpose, stop every node, delete the record (PostgreSQL: DELETE FROM oauthgate_records WHERE kind = '%s' AND key = '%s'), and start the nodes with the new issuer",
			ErrIssuerMismatch, iss, stored, storage.KindSecrets, issuerRecord)
	}
	return nil
}

// ErrIssuerMismatch is returned by Start when a shared store belongs to
// another issuer.
var ErrIssuerMismatch = errors.New("the storage belongs to another issuer")
