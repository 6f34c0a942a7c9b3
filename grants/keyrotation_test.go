package grants

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

func krKids(e *Engine) []string {
	var out []string
	for _, k := range e.Keys() {
		out = append(out, k.ID)
	}
	return out
}

// TestRotateKeys: the new key signs, the old one keeps verifying and stays
// published until its tokens expired, then disappears (RFC 7517 §5).
func TestRotateKeys(t *testing.T) {
	st := openStore(t)
	e := newEngine(t, withStore(st))
	other := newEngine(t, withStore(st)) // a second config on the same file
	ctx := context.Background()
	old := opClientToken(t, e)
	oldKid := e.keyRing().Current.ID
	kid, err := e.RotateKeys(ctx)
	if err != nil || kid == "" || kid == oldKid {
		t.Fatalf("RotateKeys = %q, %v (old %q)", kid, err, oldKid)
	}
	fresh := opClientToken(t, e)
	if h, _ := segments(t, fresh); h["kid"] != kid {
		t.Fatalf("new token signed by %v, want %s", h["kid"], kid)
	}
	if !verifies(e, old) || !verifies(e, fresh) {
		t.Fatalf("old verifies %v, new verifies %v", verifies(e, old), verifies(e, fresh))
	}
	// Both the access-token key and the RS256 ID-token key rotated.
	keys := e.Keys()
	var signing, retiring []KeyInfo
	for _, k := range keys {
		if k.Current {
			signing = append(signing, k)
		} else if k.Retires != nil {
			retiring = append(retiring, k)
		}
	}
	if len(keys) != 4 || len(signing) != 2 || len(retiring) != 2 || !slices.ContainsFunc(signing, func(k KeyInfo) bool { return k.ID == kid && k.Alg == "ES256" }) ||
		!slices.ContainsFunc(signing, func(k KeyInfo) bool { return k.Alg == "RS256" }) {
		t.Fatalf("keys after rotation: %+v", keys)
	}
	if want := time.Now().Add(e.accessTokenTTL + verifierLeeway + retireSlack); retiring[0].Retires.After(want) || retiring[0].Retires.Before(want.Add(-time.Minute)) {
		t.Fatalf("old key retires at %v, want about %v", retiring[0].Retires, want)
	}
	// The other engine picks the new key up at its next maintenance.
	if err := other.MaintainKeys(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if other.keyRing().Current.ID != kid || !verifies(other, fresh) {
		t.Fatalf("the other engine signs with %s", other.keyRing().Current.ID)
	}
	// A rotation long enough ago: the key it retired (the second one) has
	// expired; the first keeps its own, later retirement.
	if _, err := e.rotate(ctx, time.Now().Add(-time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if err := e.ReloadKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if kids := krKids(e); len(kids) != 4 || strings.Contains(strings.Join(kids, " "), kid) {
		t.Fatalf("kids %v: the second key should be gone", kids)
	}
	if verifies(e, fresh) || !verifies(e, old) {
		t.Fatalf("after retirement: token of the retired key verifies %v, of the first key %v", verifies(e, fresh), verifies(e, old))
	}
}

// TestKeyRotationAutomatic: key_rotation rotates once per period, even
// with two engines on one file.
func TestKeyRotationAutomatic(t *testing.T) {
	st := openStore(t)
	mod := func(c *Config) { c.KeyRotation = time.Hour }
	e1, e2 := newEngine(t, withStore(st), withConfig(mod)), newEngine(t, withStore(st), withConfig(mod))
	ctx := context.Background()
	first := e1.keyRing().Current.ID
	for _, e := range []*Engine{e1, e2} {
		if err := e.MaintainKeys(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		if e.keyRing().Current.ID != first {
			t.Fatalf("rotated before the period")
		}
	}
	later := time.Now().Add(61 * time.Minute)
	for _, e := range []*Engine{e1, e2} {
		if err := e.MaintainKeys(ctx, later); err != nil {
			t.Fatal(err)
		}
	}
	if e1.keyRing().Current.ID == first || e1.keyRing().Current.ID != e2.keyRing().Current.ID || len(e1.Keys()) != 4 {
		t.Fatalf("after the period: e1 %s, e2 %s, %d keys", e1.keyRing().Current.ID, e2.keyRing().Current.ID, len(e1.Keys()))
	}
	if got := e1.KeyMaintenanceInterval(); got != time.Minute {
		t.Fatalf("interval %v", got)
	}
}

// TestKeysAtRest: with a key encryption key the private key is sealed in
// storage, and the file cannot be used without the right key.
func TestKeysAtRest(t *testing.T) {
	const kek = "0123456789abcdef0123456789abcdef-kek"
	st := openStore(t)
	// A key stored plain first, then sealed when the KEK is configured.
	plain := newEngine(t, withStore(st))
	kid := plain.keyRing().Current.ID
	// Plain keys are sealed only when the operator asks for it.
	if _, err := startEngine(t, withStore(st), withConfig(func(c *Config) { c.KeyEncryptionKey = []byte(kek) })); !errors.Is(err, tokens.ErrKeyEncryption) || !strings.Contains(err.Error(), "seal_plain_keys") {
		t.Fatalf("plain keys with a KEK and no seal_plain_keys: %v", err)
	}
	sealed := newEngine(t, withStore(st), withConfig(func(c *Config) { c.KeyEncryptionKey, c.SealPlainKeys = []byte(kek), true }))
	if sealed.keyRing().Current.ID != kid {
		t.Fatalf("configuring a KEK changed the key")
	}
	err := st.View(context.Background(), func(tx storage.Tx) error {
		return tx.ForEach(storage.KindKeys, func(k string, rec storage.Record) error {
			if !strings.Contains(string(rec.Value), `"enc":"A256GCM"`) || strings.Contains(string(rec.Value), `"d":`) {
				t.Errorf("key %s is not sealed: %s", k, rec.Value)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sealed.RotateKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]string{"no KEK": "", "wrong KEK": kek + "x"} {
		_, err := startEngine(t, withStore(st), withConfig(func(c *Config) { c.KeyEncryptionKey = []byte(key) }))
		if !errors.Is(err, tokens.ErrKeyEncryption) {
			t.Errorf("%s: Start = %v, want ErrKeyEncryption", name, err)
		}
	}
	if e := newEngine(t, withStore(st), withConfig(func(c *Config) { c.KeyEncryptionKey = []byte(kek) })); len(e.Keys()) != 4 {
		t.Fatalf("keys with the right KEK: %v", e.Keys())
	}
}

func TestKeyConfigErrors(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"short KEK":         func(c *Config) { c.KeyEncryptionKey = []byte("short") },
		"rotation too fast": func(c *Config) { c.KeyRotation = time.Second },
		"negative rotation": func(c *Config) { c.KeyRotation = -time.Hour },
	} {
		if _, err := startEngine(t, withStore(openStore(t)), withConfig(mod)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestPlantedKeyRefused: once a key encryption key is set, someone who
// can write the storage file but does not know the KEK cannot make the
// server sign with a key of theirs: a key stored unencrypted is refused
// (not sealed and adopted), and so is a key outside the authenticated key
// set or a tampered set, with an error that says what happened.
func TestPlantedKeyRefused(t *testing.T) {
	const kek = "0123456789abcdef0123456789abcdef-kek"
	withKEK := func(c *Config) { c.KeyEncryptionKey = []byte(kek) }
	ctx := context.Background()

	t.Run("key set deleted", func(t *testing.T) {
		// Deleting the set would let a sealed key from another file of
		// the same key encryption key in; only seal_plain_keys adopts
		// sealed keys without a set (a file from before the set).
		st := openStore(t)
		newEngine(t, withStore(st), withConfig(withKEK))
		if err := st.Update(ctx, func(tx storage.Tx) error { return tx.Delete(storage.KindSecrets, keySetRecord) }); err != nil {
			t.Fatal(err)
		}
		if _, err := startEngine(t, withStore(st), withConfig(withKEK)); err == nil || !errors.Is(err, tokens.ErrKeyEncryption) || !strings.Contains(err.Error(), "key set") {
			t.Fatalf("start without the key set: %v", err)
		}
		newEngine(t, withStore(st), withConfig(func(c *Config) { withKEK(c); c.SealPlainKeys = true }))
		newEngine(t, withStore(st), withConfig(withKEK)) // the set is written again
	})
	t.Run("plain key", func(t *testing.T) {
		st := openStore(t)
		e := newEngine(t, withStore(st), withConfig(withKEK))
		// The attacker's key: newer, so it would become the signing key.
		planted := krPlantKey(t, st, "", time.Now().Add(time.Hour))
		err := e.ReloadKeys(ctx)
		if err == nil || !strings.Contains(err.Error(), "unencrypted") || !strings.Contains(err.Error(), planted) {
			t.Fatalf("reload with a planted plain key: %v", err)
		}
		if _, err := startEngine(t, withStore(st), withConfig(withKEK)); err == nil {
			t.Fatalf("a new engine started with a planted plain key")
		}
		if e.keyRing().Current.ID == planted {
			t.Fatalf("the planted key signs")
		}
	})
	t.Run("everything deleted and a plain key planted", func(t *testing.T) {
		st := openStore(t)
		newEngine(t, withStore(st), withConfig(withKEK))
		// The attacker deletes every sealed key and the key set, so the
		// file looks like one from before the KEK, and plants a plain key.
		err := st.Update(ctx, func(tx storage.Tx) error {
			var kids []string
			if err := tx.ForEach(storage.KindKeys, func(id string, _ storage.Record) error {
				kids = append(kids, id)
				return nil
			}); err != nil {
				return err
			}
			for _, id := range kids {
				if err := tx.Delete(storage.KindKeys, id); err != nil {
					return err
				}
			}
			return tx.Delete(storage.KindSecrets, keySetRecord)
		})
		if err != nil {
			t.Fatal(err)
		}
		planted := krPlantKey(t, st, "", time.Now())
		_, err = startEngine(t, withStore(st), withConfig(withKEK))
		if !errors.Is(err, tokens.ErrKeyEncryption) || !strings.Contains(err.Error(), planted) || !strings.Contains(err.Error(), "seal_plain_keys") {
			t.Fatalf("start with only a planted plain key: %v, want tokens.ErrKeyEncryption naming the key and seal_plain_keys", err)
		}
		// Nothing was sealed or adopted.
		err = st.View(ctx, func(tx storage.Tx) error {
			rec, err := tx.Get(storage.KindKeys, planted)
			if err != nil {
				return err
			}
			if strings.Contains(string(rec.Value), `"enc":"A256GCM"`) {
				t.Errorf("the refused plain key was sealed")
			}
			if _, err := tx.Get(storage.KindSecrets, keySetRecord); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("a key set was written for a refused store: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("key outside the set", func(t *testing.T) {
		st := openStore(t)
		e := newEngine(t, withStore(st), withConfig(withKEK))
		// A sealed key (as if copied from another file with the same KEK,
		// or an old backup) that this file's key set does not name.
		planted := krPlantKey(t, st, kek, time.Now().Add(time.Hour))
		if err := e.ReloadKeys(ctx); err == nil || !strings.Contains(err.Error(), planted) {
			t.Fatalf("reload with a key outside the authenticated set: %v", err)
		}
	})
	t.Run("tampered set", func(t *testing.T) {
		st := openStore(t)
		e := newEngine(t, withStore(st), withConfig(withKEK))
		err := st.Update(ctx, func(tx storage.Tx) error {
			return tx.Put(storage.KindSecrets, keySetRecord, storage.Record{Value: []byte(`{"kids":["x"],"mac":"AAAA"}`)})
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.ReloadKeys(ctx); err == nil || !errors.Is(err, tokens.ErrKeyEncryption) {
			t.Fatalf("reload with a tampered key set: %v", err)
		}
	})
	t.Run("rotation keeps the set valid", func(t *testing.T) {
		st := openStore(t)
		e := newEngine(t, withStore(st), withConfig(withKEK))
		if _, err := e.RotateKeys(ctx); err != nil {
			t.Fatal(err)
		}
		// The old and the new key of each algorithm the ring signs with.
		if e2 := newEngine(t, withStore(st), withConfig(withKEK)); len(e2.Keys()) != 2*len(e.ringAlgs()) {
			t.Fatalf("keys after rotation: %v", e2.Keys())
		}
	})
}

// krPlantKey writes a fresh ES256 key straight into st, made (and sealed
// with kek, when not empty) by a key ring on another store, as if copied
// from another file, and returns its id.
func krPlantKey(t *testing.T, st storage.Store, kek string, created time.Time) string {
	t.Helper()
	ks, err := tokens.NewKeys(tokens.KeyOptions{Algs: []string{"ES256"}, EncryptionKey: []byte(kek), Generate: generateKey})
	if err != nil {
		t.Fatal(err)
	}
	other := openStore(t)
	if err := ks.Load(context.Background(), other, created); err != nil {
		t.Fatal(err)
	}
	k := ks.Ring().Current
	var rec storage.Record
	if err := other.View(context.Background(), func(tx storage.Tx) (err error) { rec, err = tx.Get(storage.KindKeys, k.ID); return err }); err != nil {
		t.Fatal(err)
	}
	if err := st.Update(context.Background(), func(tx storage.Tx) error { return tx.Put(storage.KindKeys, k.ID, rec) }); err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// keySetRecord is where the authenticated set of stored key ids is kept
// (tokens/keycrypt.go), which these tests delete or tamper with.
const keySetRecord = "signing-key-set"
