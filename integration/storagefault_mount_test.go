//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// The storage fault tests below put a child Caddy's storage_path on a
// mount of its own (a tmpfs, or an ext4 image), which they fill or make
// read-only. Mounting needs root with CAP_SYS_ADMIN; CI runs the tests
// as root.
const (
	faultIssuer = "http://localhost:19800"
	faultGate   = "http://localhost:19801/"
)

// TestRunTimeStorageFull fills the data directory under a running Caddy.
// Requests that need no write (client_credentials, oauth_protect) keep
// working; a write that cannot be stored answers 503
// temporarily_unavailable, never a 500 or a panic, and its transaction
// leaves nothing behind: the token whose revocation failed still passes
// the gate, a refresh token refused then still rotates, exactly once,
// when there is room again, and everything acknowledged before the fault
// still works, also after a restart.
//
// bbolt rewrites pages it has freed, which a full disk still holds, so a
// write fails only once it needs the file to grow. Each revocation of an
// access token stores a new record, so the test revokes fresh tokens
// until one cannot be stored. A refresh rotation rewrites its grant in
// place and may still fit; either it works or it fails whole.
func TestRunTimeStorageFull(t *testing.T) {
	began := time.Now()
	home, data := faultHome(t)
	bin, cfg := faultConfig(t, home, filepath.Join(data, "oauth.db"))
	child := startCrashChild(t, bin, cfg, home, "caddy-1.log", faultIssuer)
	kids := crashKids(t, faultIssuer)

	// Acknowledged before the fault.
	pre := faultWant200(t, relSvcID, relSvcSecret, relCCForm, "client_credentials before the fault").str("access_token")
	crashAssertGate(t, faultGate, pre, "before the fault")
	chain := faultRedeem(t, "the chain to rotate")
	doomed := faultRedeem(t, "the chain to revoke")
	verifier := oauth2.GenerateVerifier()
	code, err := relCode(faultIssuer, verifier)
	if err != nil {
		t.Fatal(err)
	}

	filler := faultFill(t, data)
	full := time.Now()

	// No write needed.
	faultWant200(t, relSvcID, relSvcSecret, relCCForm, "client_credentials on a full disk")
	crashAssertGate(t, faultGate, pre, "on a full disk")

	var doomedAccess string
	revocations := 0
	for doomedAccess == "" {
		if revocations == 2000 {
			t.Fatalf("%d revocations on a full disk all succeeded: is %s full?", revocations, data)
		}
		tok := faultWant200(t, relSvcID, relSvcSecret, relCCForm, "client_credentials on a full disk").str("access_token")
		a := faultPost(t, "/oauth/revoke", relSvcID, relSvcSecret, map[string][]string{"token": {tok}})
		if a.status == http.StatusOK {
			revocations++
			continue
		}
		faultWantUnavailable(t, a, "revoking an access token on a full disk")
		if t.Failed() {
			t.FailNow()
		}
		doomedAccess = tok
	}
	t.Logf("the first write that had to grow the file failed after %d revocations", revocations)
	// Nothing was freed since, so the same write fails the same way, and
	// the failed revocation is not half made: the gate still takes it.
	faultWantUnavailable(t, faultPost(t, "/oauth/revoke", relSvcID, relSvcSecret, map[string][]string{"token": {doomedAccess}}), "the same revocation again")
	crashAssertGate(t, faultGate, doomedAccess, "the token whose revocation failed")

	var stuck string
	rotation := faultPost(t, "/oauth/token", relAppID, relAppSecret, relRefreshForm(chain))
	if faultMaybe(t, rotation, "rotating on a full disk") {
		chain = rotation.str("refresh_token")
	} else {
		stuck = chain
	}

	// Other writes either fit in pages bbolt already holds or fail whole;
	// what they did is checked once there is room again.
	redeemed := faultMaybe(t, faultPost(t, "/oauth/token", relAppID, relAppSecret, relRedeemForm(code, verifier)), "redeeming a code on a full disk")
	revokedGrant := faultMaybe(t, faultPost(t, "/oauth/revoke", relAppID, relAppSecret, map[string][]string{"token": {doomed}}), "revoking a refresh token on a full disk")
	status, loc, page, err := relLogin(faultIssuer, oauth2.GenerateVerifier())
	switch {
	case err != nil:
		t.Errorf("signing in on a full disk: %v", err)
	case status == http.StatusServiceUnavailable && strings.Contains(page, "unavailable"):
		// The session could not be stored: an error page, not a 500.
	case status == http.StatusFound && loc.Query().Get("error") == "temporarily_unavailable":
		// Signed in, but the code could not be stored: the client hears
		// it (RFC 6749 §4.1.2.1).
	case status == http.StatusFound && loc.Query().Get("code") != "":
	default:
		t.Errorf("signing in on a full disk: %d %q %.300q", status, loc, page)
	}
	t.Logf("on a full disk: rotate %v, redeem %v, revoke refresh %v, sign-in %d %s",
		stuck == "", redeemed, revokedGrant, status, loc.Query().Get("error"))
	faultNoPanic(t, home, "caddy-1.log")
	faultLogged(t, home, "caddy-1.log", "no space left on device")

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	t.Logf("disk full for %s", time.Since(full).Round(time.Millisecond))

	// A failed rotation consumed nothing. Whether it rotates exactly once
	// is checked last: presenting it again revokes the chain.
	if stuck != "" {
		chain = faultWant200(t, relAppID, relAppSecret, relRefreshForm(stuck), "the refresh token refused on a full disk, with room again").str("refresh_token")
	}
	chain = faultWant200(t, relAppID, relAppSecret, relRefreshForm(chain), "the chain's newest refresh token").str("refresh_token")
	if !redeemed {
		faultWant200(t, relAppID, relAppSecret, relRedeemForm(code, verifier), "the code refused on a full disk")
	}
	crashAssertSpent(t, faultIssuer, relRedeemForm(code, verifier), "the code")
	if revokedGrant {
		crashAssertSpent(t, faultIssuer, relRefreshForm(doomed), "the refresh token revoked on a full disk")
	} else {
		faultWant200(t, relAppID, relAppSecret, relRefreshForm(doomed), "the refresh token whose revocation was refused")
	}
	if a := faultPost(t, "/oauth/revoke", relSvcID, relSvcSecret, map[string][]string{"token": {doomedAccess}}); a.status != http.StatusOK {
		t.Errorf("revoking with room again: %d %v", a.status, a.body)
	}
	req := newRequest(t, http.MethodGet, faultGate, nil)
	req.Header.Set("Authorization", "Bearer "+doomedAccess)
	if resp, _ := httpDo(t, req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the access token revoked with room again gets %d at oauth_protect", resp.StatusCode)
	}
	crashAssertGate(t, faultGate, pre, "with room again")
	// A fresh challenge: the server refuses one a live code carries.
	if _, err := relCode(faultIssuer, oauth2.GenerateVerifier()); err != nil {
		t.Errorf("signing in with room again: %v", err)
	}
	faultNoPanic(t, home, "caddy-1.log")

	// The file opens again and holds what was acknowledged.
	child.kill(t)
	startCrashChild(t, bin, cfg, home, "caddy-2.log", faultIssuer)
	faultWant200(t, relAppID, relAppSecret, relRefreshForm(chain), "the chain's newest refresh token after a restart")
	crashAssertGate(t, faultGate, pre, "after a restart")
	if got := crashKids(t, faultIssuer); !slices.Equal(got, kids) {
		t.Errorf("JWKS kids after a restart %q, want %q", got, kids)
	}
	if stuck != "" {
		crashAssertSpent(t, faultIssuer, relRefreshForm(stuck), "the refresh token refused on a full disk")
	}
	faultNoPanic(t, home, "caddy-2.log")
	t.Logf("whole test %s", time.Since(began).Round(time.Millisecond))
}

// TestRunTimeStorageReadOnly makes the data directory read-only under a
// running Caddy. Linux refuses a plain read-only remount while a file is
// open for writing (EBUSY), and bbolt holds its file open read-write, so
// the test does what ext4 does itself on a disk error (errors=remount-ro):
// it aborts the filesystem, which forces it read-only under the open
// file. Reads keep working; every write answers 503
// temporarily_unavailable and leaves nothing behind, so once the
// filesystem is mounted again and Caddy restarted, the refresh token and
// the code presented during the fault work, exactly once.
func TestRunTimeStorageReadOnly(t *testing.T) {
	home := t.TempDir()
	img := filepath.Join(home, "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 (from e2fsprogs, which this test needs): %v: %s", err, out)
	}
	data := faultMount(t, home, "-o", "loop", img)
	bin, cfg := faultConfig(t, home, filepath.Join(data, "oauth.db"))
	child := startCrashChild(t, bin, cfg, home, "caddy-1.log", faultIssuer)

	pre := faultWant200(t, relSvcID, relSvcSecret, relCCForm, "client_credentials").str("access_token")
	chain := faultRedeem(t, "a chain")
	verifier := oauth2.GenerateVerifier()
	code, err := relCode(faultIssuer, verifier)
	if err != nil {
		t.Fatal(err)
	}

	if err := syscall.Mount("", data, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("remounting %s read-only under caddy: %v, want EBUSY (the bbolt file is open for writing)", data, err)
	}
	if out, err := exec.Command("mount", "-o", "remount,abort", data).CombinedOutput(); err != nil {
		t.Fatalf("aborting the ext4 filesystem at %s: %v: %s", data, err, out)
	}
	if err := os.WriteFile(filepath.Join(data, "probe"), nil, 0o600); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("writing to %s after the abort: %v, want EROFS", data, err)
	}

	faultWant200(t, relSvcID, relSvcSecret, relCCForm, "client_credentials on a read-only filesystem")
	crashAssertGate(t, faultGate, pre, "on a read-only filesystem")
	faultWantUnavailable(t, faultPost(t, "/oauth/token", relAppID, relAppSecret, relRefreshForm(chain)), "rotating on a read-only filesystem")
	faultWantUnavailable(t, faultPost(t, "/oauth/token", relAppID, relAppSecret, relRedeemForm(code, verifier)), "redeeming a code on a read-only filesystem")
	faultWantUnavailable(t, faultPost(t, "/oauth/revoke", relSvcID, relSvcSecret, map[string][]string{"token": {pre}}), "revoking an access token on a read-only filesystem")
	status, loc, page, err := relLogin(faultIssuer, oauth2.GenerateVerifier())
	if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(page, "unavailable") {
		t.Errorf("signing in on a read-only filesystem: %v %d %q %.300q, want a 503 error page", err, status, loc, page)
	}
	crashAssertGate(t, faultGate, pre, "after the refused revocation")
	faultNoPanic(t, home, "caddy-1.log")

	// An aborted ext4 cannot be made writable again while mounted: stop
	// Caddy and mount it afresh, as an operator would after the fault.
	child.kill(t)
	if err := syscall.Unmount(data, 0); err != nil {
		t.Fatalf("unmounting %s: %v", data, err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, data).CombinedOutput(); err != nil {
		t.Fatalf("mounting %s again: %v: %s", img, err, out)
	}
	startCrashChild(t, bin, cfg, home, "caddy-2.log", faultIssuer)
	chain2 := faultWant200(t, relAppID, relAppSecret, relRefreshForm(chain), "the refresh token presented on the read-only filesystem").str("refresh_token")
	faultWant200(t, relAppID, relAppSecret, relRedeemForm(code, verifier), "the code presented on the read-only filesystem")
	crashAssertSpent(t, faultIssuer, relRedeemForm(code, verifier), "the code")
	faultWant200(t, relAppID, relAppSecret, relRefreshForm(chain2), "the chain's newest refresh token")
	crashAssertGate(t, faultGate, pre, "after mounting again")
	crashAssertSpent(t, faultIssuer, relRefreshForm(chain), "the refresh token presented on the read-only filesystem")
	faultNoPanic(t, home, "caddy-2.log")
}

// TestStorageFaultReadOnlyAtStart starts Caddy with storage_path on a
// read-only mount: an existing bbolt file, a file to create and a
// directory to create. Each makes `caddy run` exit with an error naming
// the path and saying it must be writable, without a panic, and leaves an
// existing file as it was.
func TestStorageFaultReadOnlyAtStart(t *testing.T) {
	home, data := faultHome(t)
	existing := filepath.Join(data, "oauth.db")
	whole, _ := faultBoltFile(t, existing)
	faultRemount(t, data, syscall.MS_RDONLY)
	for _, path := range []string{existing, filepath.Join(data, "new.db"), filepath.Join(data, "sub", "oauth.db")} {
		bin, cfg := faultConfig(t, home, path)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := crashCommand(ctx, bin, cfg, home).CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("storage_path %s on a read-only mount: caddy was still running after 20s:\n%s", path, out)
		}
		if err == nil {
			t.Fatalf("storage_path %s on a read-only mount: caddy exited without an error:\n%s", path, out)
		}
		msg := string(out)
		for _, want := range []string{path, "read-only file system", "write", "storage_path"} {
			if !strings.Contains(msg, want) {
				t.Errorf("storage_path %s on a read-only mount: the error does not say %q:\n%s", path, want, msg)
			}
		}
		if strings.Contains(msg, "panic") {
			t.Errorf("storage_path %s on a read-only mount: a panic:\n%s", path, msg)
		}
	}
	faultUnchanged(t, existing, whole)
}

// faultHome makes a home directory for the child with a 2 MiB tmpfs in
// it for storage: room for bbolt to start and grow a little, small
// enough to fill at once.
func faultHome(t *testing.T) (home, data string) {
	t.Helper()
	home = t.TempDir()
	return home, faultMount(t, home, "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs")
}

// faultMount mounts source (with the mount options in args) at
// home/storage and returns that directory.
func faultMount(t *testing.T, home string, args ...string) string {
	t.Helper()
	data := filepath.Join(home, "storage")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", append(args, data)...).CombinedOutput(); err != nil {
		t.Fatalf("mount %s %s: %v: %s: this test needs root with CAP_SYS_ADMIN (CI runs it as root)", strings.Join(args, " "), data, err, out)
	}
	// Registered after t.TempDir, so it runs before the directory is
	// removed, and before the child's kill, so after it. If caddy still
	// holds the file (the kill failed), detach instead.
	t.Cleanup(func() {
		if err := syscall.Unmount(data, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
			if err := syscall.Unmount(data, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmounting %s: %v", data, err)
			}
		}
	})
	return data
}

// faultRemount changes data's mount flags (MS_RDONLY, or 0 for
// read-write).
func faultRemount(t *testing.T, data string, flags uintptr) {
	t.Helper()
	if err := syscall.Mount("", data, "", syscall.MS_REMOUNT|flags, ""); err != nil {
		t.Fatalf("remounting %s (flags %#x): %v", data, flags, err)
	}
}

// faultConfig writes the child's Caddyfile with storage at path and
// returns the caddy binary and the Caddyfile.
func faultConfig(t *testing.T, home, path string) (bin, cfg string) {
	t.Helper()
	bin, err := crashBinary()
	if err != nil {
		t.Fatal(err)
	}
	cfg = filepath.Join(home, "Caddyfile")
	caddyfile := relRender(path, "localhost:19890", "19802", "19803", "19800", "19801", "10m", "crash-ok")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	return bin, cfg
}

// faultFill writes a file into dir until the filesystem is full and
// returns its name.
func faultFill(t *testing.T, dir string) string {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// tmpfs hands out whole pages: end with page-sized writes so that
	// not even one page is left.
	for _, size := range []int{64 << 10, 4 << 10} {
		chunk := make([]byte, size)
		for {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling %s: %v", dir, err)
				}
				break
			}
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bavail != 0 {
		t.Fatalf("%s still has %d blocks free after filling it", dir, st.Bavail)
	}
	return name
}

// faultRedeem gets a code and redeems it, returning the refresh token.
func faultRedeem(t *testing.T, what string) string {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	code, err := relCode(faultIssuer, verifier)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return faultWant200(t, relAppID, relAppSecret, relRedeemForm(code, verifier), what).str("refresh_token")
}

// faultPost posts form to the child's endpoint and stops the test if no
// answer arrives.
func faultPost(t *testing.T, endpoint, id, secret string, form map[string][]string) relTokenAnswer {
	t.Helper()
	a, err := relPost(relNoRedirects, faultIssuer+endpoint, id, secret, form)
	if err != nil {
		t.Fatalf("%s: %v", endpoint, err)
	}
	return a
}

// faultWant200 posts form to the token endpoint and wants a token.
func faultWant200(t *testing.T, id, secret string, form map[string][]string, what string) relTokenAnswer {
	t.Helper()
	a := faultPost(t, "/oauth/token", id, secret, form)
	if a.status != http.StatusOK || a.str("access_token") == "" {
		t.Fatalf("%s: %d %v, want 200 with a token", what, a.status, a.body)
	}
	return a
}

// faultWantUnavailable wants the answer to a write the server could not
// make: 503 temporarily_unavailable, not to be cached.
func faultWantUnavailable(t *testing.T, a relTokenAnswer, what string) {
	t.Helper()
	if a.status != http.StatusServiceUnavailable || a.str("error") != "temporarily_unavailable" ||
		a.header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: %d %v (Cache-Control %q), want 503 temporarily_unavailable, no-store",
			what, a.status, a.body, a.header.Get("Cache-Control"))
	}
}

// faultMaybe accepts success or faultWantUnavailable's answer and
// reports which.
func faultMaybe(t *testing.T, a relTokenAnswer, what string) bool {
	t.Helper()
	if a.status == http.StatusOK {
		return true
	}
	faultWantUnavailable(t, a, what)
	return false
}

// faultNoPanic checks the child's log has no panic in it.
// faultLogged checks that the child's log has an ERROR line "oauth
// storage unavailable" that names cause and the request's id: a full
// disk must leave a trace where the operator looks.
func faultLogged(t *testing.T, home, logName, cause string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, logName))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["level"] != "error" || m["msg"] != "oauth storage unavailable" {
			continue
		}
		n++
		if e, _ := m["error"].(string); strings.Contains(e, cause) && m["request_id"] != nil && m["request_id"] != "" {
			return
		}
	}
	t.Errorf("%s has %d \"oauth storage unavailable\" ERROR lines, none naming %q with a request_id", logName, n, cause)
}

func faultNoPanic(t *testing.T, home, logName string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, logName))
	if err != nil {
		t.Fatal(err)
	}
	if i := strings.Index(string(b), "panic"); i >= 0 {
		t.Errorf("%s has a panic: %.2000s", logName, b[max(0, i-500):])
	}
}
