package integration

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bbolt "go.etcd.io/bbolt"
)

// TestStorageFaults: a storage_path that cannot be created, a file of
// garbage and a truncated bbolt file each make the config load fail with
// an error naming the file and saying what to do, leave the file as it
// was and the running config serving; once the file is fixed, the same
// config loads. A panic here would kill the test process.
//
// A data directory that is read-only at start, or becomes full or
// read-only at run time, needs a mount of its own: see
// storagefault_mount_test.go.
func TestStorageFaults(t *testing.T) {
	good := storagePath(t)
	startCaddy(t, relConfig(good, "10m", "gated"))
	serving := func(when string) {
		t.Helper()
		a, err := relTokenRequest(relNoRedirects, relIssuer, relSvcID, relSvcSecret, relCCForm)
		if err != nil || a.status != http.StatusOK || a.str("access_token") == "" {
			t.Fatalf("%s: client_credentials: %v %d %v", when, err, a.status, a.body)
		}
	}
	serving("before the faults")
	refused := func(name, path string, wants ...string) {
		t.Helper()
		status, msg, _ := loadConfig(t, relConfig(path, "10m", "gated"), "text/caddyfile")
		t.Logf("%s: %d %s", name, status, msg)
		if status == http.StatusOK {
			t.Fatalf("%s: the config loaded", name)
		}
		for _, want := range append([]string{path}, wants...) {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: the load error %q does not say %q", name, msg, want)
			}
		}
		// Caddy keeps the running config.
		settleAdmin(t)
		serving("after " + name)
	}
	loads := func(name, path string) {
		t.Helper()
		status, msg, _ := loadConfig(t, relConfig(path, "10m", "gated"), "text/caddyfile")
		if status != http.StatusOK {
			t.Fatalf("%s: /load answered %d: %s", name, status, msg)
		}
		settleAdmin(t)
		serving(name)
	}

	// Directories that cannot be created, even by root.
	refused("storage under /proc", "/proc/self/oauthgate-no-such-dir/oauth.db", "creating directory")
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused("storage under a regular file", filepath.Join(file, "oauth.db"), "creating directory")

	// Garbage: refused, and the file is not written to.
	garbage := filepath.Join(t.TempDir(), "oauth.db")
	junk := make([]byte, 64<<10)
	rng := rand.New(rand.NewPCG(6, 3))
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(garbage, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	refused("a file of garbage", garbage, "restore it from a backup or move it away")
	faultUnchanged(t, garbage, junk)
	if err := os.Remove(garbage); err != nil {
		t.Fatal(err)
	}
	loads("the garbage file removed", garbage)
	loads("back to the first file", good) // releases the other file

	// A bbolt file cut short, as by a partial copy: refused as corrupt,
	// the file left alone and its lock released, so putting the whole
	// file back in place works without a restart.
	truncated := filepath.Join(t.TempDir(), "oauth.db")
	whole, used := faultBoltFile(t, truncated)
	// bbolt grows its file in steps, so cutting only unused space at the
	// end is harmless; these cuts remove pages in use.
	for _, size := range []int{used / 2, used - 4096, 16 << 10} {
		cut := whole[:size]
		if err := os.WriteFile(truncated, cut, 0o600); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("a bbolt file of %d bytes cut to %d", len(whole), size)
		refused(name, truncated, "corrupt", "restore it from a backup or move it away")
		faultUnchanged(t, truncated, cut)
		if err := os.WriteFile(truncated, whole, 0o600); err != nil {
			t.Fatal(err)
		}
		loads("the whole file restored in place after "+name, truncated)
		loads("back to the first file after "+name, good)
	}
	if err := os.Remove(truncated); err != nil {
		t.Fatal(err)
	}
	loads("the truncated file removed", truncated)
}

// faultBoltFile writes a valid bbolt file of a few hundred kilobytes at
// path and returns its bytes and how many of them hold pages in use.
func faultBoltFile(t *testing.T, path string) ([]byte, int) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("filler"))
		if err != nil {
			return err
		}
		for i := range 2000 {
			if err := b.Put([]byte(fmt.Sprintf("key-%05d", i)), bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var used int
	if err := db.View(func(tx *bbolt.Tx) error { used = int(tx.Size()); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if used > len(b) || used < 64<<10 {
		t.Fatalf("bbolt file of %d bytes with %d in use", len(b), used)
	}
	return b, used
}

// faultUnchanged checks a refused file still holds exactly want.
func faultUnchanged(t *testing.T, path string, want []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s was changed by the refused load: %d bytes, was %d", path, len(got), len(want))
	}
}
