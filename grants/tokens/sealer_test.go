package tokens

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

func testSealer(t *testing.T) *Sealer {
	t.Helper()
	s, err := NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealerRoundTrip(t *testing.T) {
	s := testSealer(t)
	for _, plain := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("session"), 300)} {
		sealed := s.Seal([]byte("aad"), plain)
		if strings.ContainsAny(sealed, "+/=") {
			t.Fatalf("sealed value %q is not URL-safe base64 without padding", sealed)
		}
		got, err := s.Open([]byte("aad"), sealed)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Open = %q, %v; want %q", got, err, plain)
		}
	}
	if a, b := s.Seal(nil, []byte("same")), s.Seal(nil, []byte("same")); a == b {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
}

func TestSealerTamper(t *testing.T) {
	s := testSealer(t)
	sealed := s.Seal([]byte("aad"), []byte("alice's session"))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(sealed) {
		for _, c := range []byte{alphabet[(strings.IndexByte(alphabet, sealed[i])+1)%64], alphabet[(strings.IndexByte(alphabet, sealed[i])+32)%64]} {
			b := []byte(sealed)
			b[i] = c
			if got, err := s.Open([]byte("aad"), string(b)); err == nil {
				t.Fatalf("changing character %d to %q opened: %q", i, c, got)
			}
		}
	}
	raw, _ := base64.RawURLEncoding.DecodeString(sealed)
	for i := range raw {
		b := bytes.Clone(raw)
		b[i] ^= 0x01
		if _, err := s.Open([]byte("aad"), base64.RawURLEncoding.EncodeToString(b)); !errors.Is(err, ErrSealed) {
			t.Fatalf("flipping byte %d: err = %v, want ErrSealed", i, err)
		}
	}
	for _, bad := range []string{"", "a", sealed[:len(sealed)-1], sealed + "A", sealed + "AA", sealed[:20], "!!!!" + sealed[4:], strings.Repeat("A", 200000)} {
		if _, err := s.Open([]byte("aad"), bad); !errors.Is(err, ErrSealed) {
			t.Fatalf("Open(%.40q) err = %v, want ErrSealed", bad, err)
		}
	}
}

func TestSealerWrongAAD(t *testing.T) {
	s := testSealer(t)
	sealed := s.Seal([]byte("cookie-a"), []byte("v"))
	for _, aad := range [][]byte{nil, []byte("cookie-b"), []byte("cookie-a\x00")} {
		if _, err := s.Open(aad, sealed); !errors.Is(err, ErrSealed) {
			t.Fatalf("Open with aad %q: err = %v, want ErrSealed", aad, err)
		}
	}
}

func TestSealerUnknownKey(t *testing.T) {
	a := testSealer(t)
	b, err := NewSealer(bytes.Repeat([]byte{8}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(nil, a.Seal(nil, []byte("v"))); !errors.Is(err, ErrSealed) {
		t.Fatalf("another secret opened the value: err = %v", err)
	}
	// The same ciphertext under b's key id is still refused (the tag).
	raw, _ := base64.RawURLEncoding.DecodeString(a.Seal(nil, []byte("v")))
	braw, _ := base64.RawURLEncoding.DecodeString(b.Seal(nil, []byte("v")))
	copy(raw, braw[:sealKIDLen])
	if _, err := b.Open(nil, base64.RawURLEncoding.EncodeToString(raw)); !errors.Is(err, ErrSealed) {
		t.Fatalf("a value relabelled with b's key id opened: err = %v", err)
	}
}

func TestSealerShortSecret(t *testing.T) {
	for _, n := range []int{0, 16, 31} {
		if _, err := NewSealer(make([]byte, n)); err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
			t.Fatalf("NewSealer(%d bytes) err = %v, want a refusal naming 32 bytes", n, err)
		}
	}
}

func TestKeysSealerRotation(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	now := time.Now()
	ks, err := NewKeys(KeyOptions{Algs: []string{"ES256"}})
	if err != nil {
		t.Fatal(err)
	}
	s := ks.Sealer()
	if got := s.Seal(nil, []byte("v")); got != "" {
		t.Fatalf("Seal before Load = %q, want \"\"", got)
	}
	if _, err := s.Open(nil, ""); !errors.Is(err, ErrSealed) {
		t.Fatalf("Open before Load: err = %v", err)
	}
	if err := ks.Load(ctx, st, now); err != nil {
		t.Fatal(err)
	}
	old := s.Seal([]byte("c"), []byte("before rotation"))
	if got, err := s.Open([]byte("c"), old); err != nil || string(got) != "before rotation" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// A second Keys on the same storage (another server, or after a
	// restart) derives the same keys.
	ks2, _ := NewKeys(KeyOptions{Algs: []string{"ES256"}})
	if err := ks2.Load(ctx, st, now); err != nil {
		t.Fatal(err)
	}
	if got, err := ks2.Sealer().Open([]byte("c"), old); err != nil || string(got) != "before rotation" {
		t.Fatalf("a restarted server cannot open the value: %q, %v", got, err)
	}

	oldKID := ks.Ring().Current.ID
	if _, err := ks.Rotate(ctx, st, now, 0, func(storage.Tx) (time.Duration, error) { return time.Hour, nil }); err != nil {
		t.Fatal(err)
	}
	if err := ks.Load(ctx, st, now); err != nil {
		t.Fatal(err)
	}
	fresh := s.Seal([]byte("c"), []byte("after rotation"))
	if fresh[:8] == old[:8] {
		t.Fatal("the new value is sealed with the old key id after the rotation")
	}
	for v, want := range map[string]string{old: "before rotation", fresh: "after rotation"} {
		if got, err := s.Open([]byte("c"), v); err != nil || string(got) != want {
			t.Fatalf("while the old key is in the ring: Open = %q, %v; want %q", got, err, want)
		}
	}
	// The old key leaves the ring (as when its retirement is swept):
	// what it sealed no longer opens.
	if err := st.Update(ctx, func(tx storage.Tx) error { return tx.Delete(storage.KindKeys, oldKID) }); err != nil {
		t.Fatal(err)
	}
	if err := ks.Load(ctx, st, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open([]byte("c"), old); !errors.Is(err, ErrSealed) {
		t.Fatalf("a value sealed with a key that left the ring opened: err = %v", err)
	}
	if got, err := s.Open([]byte("c"), fresh); err != nil || string(got) != "after rotation" {
		t.Fatalf("Open(fresh) = %q, %v", got, err)
	}
}

func TestSealerAllocs(t *testing.T) {
	s := testSealer(t)
	aad, plain := []byte("aad"), bytes.Repeat([]byte("p"), 300)
	sealed := s.Seal(aad, plain)
	if n := testing.AllocsPerRun(100, func() { _ = s.Seal(aad, plain) }); n > 2 {
		t.Errorf("Seal allocates %v times, want at most 2 (buffer and string)", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = s.Open(aad, sealed) }); n > 2 {
		t.Errorf("Open allocates %v times, want at most 2", n)
	}
}

func BenchmarkSealerSeal(b *testing.B) {
	s, _ := NewSealer(bytes.Repeat([]byte{7}, 32))
	plain := bytes.Repeat([]byte("p"), 300)
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Seal(nil, plain)
	}
}

func BenchmarkSealerOpen(b *testing.B) {
	s, _ := NewSealer(bytes.Repeat([]byte{7}, 32))
	sealed := s.Seal(nil, bytes.Repeat([]byte("p"), 300))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = s.Open(nil, sealed)
	}
}
