//go:build linux

package bolt

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// faultHooks gives the suite stores on file systems of their own: a
// small tmpfs to fill, and an ext4 image to force read-only as ext4 does
// itself on a disk error (errors=remount-ro). Mounting needs root with
// CAP_SYS_ADMIN, as the integration fault tests do (CI runs as root), and
// the ext4 image needs mkfs.ext4 (e2fsprogs: make deps installs it).
func faultHooks() (func(*testing.T) (storage.Store, func(*testing.T) func()), func(*testing.T) (storage.Store, func(*testing.T))) {
	return openOnFullDisk, openOnReadOnly
}

func openOnFullDisk(t *testing.T) (storage.Store, func(*testing.T) func()) {
	dir := mountTemp(t, "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs")
	st := openAt(t, filepath.Join(dir, "oauth.db"))
	return st, func(t *testing.T) func() {
		name := fillDir(t, dir)
		return func() {
			if err := os.Remove(name); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func openOnReadOnly(t *testing.T) (storage.Store, func(*testing.T)) {
	img := filepath.Join(t.TempDir(), "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 (from e2fsprogs, which this test needs): %v: %s", err, out)
	}
	dir := mountTemp(t, "-o", "loop", img)
	st := openAt(t, filepath.Join(dir, "oauth.db"))
	return st, func(t *testing.T) {
		// A plain read-only remount is refused while bbolt holds the
		// file open for writing (EBUSY); aborting the file system forces
		// it, as a disk error does.
		if out, err := exec.Command("mount", "-o", "remount,abort", dir).CombinedOutput(); err != nil {
			t.Fatalf("aborting the ext4 file system at %s: %v: %s", dir, err, out)
		}
		if err := os.WriteFile(filepath.Join(dir, "probe"), nil, 0o600); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("writing to %s after the abort: %v, want EROFS", dir, err)
		}
	}
}

// mountTemp mounts (mount's args, then the directory) on a new temporary
// directory and unmounts it when the test ends, after the store on it is
// closed (cleanups run last registered first).
func mountTemp(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", append(args, dir)...).CombinedOutput(); err != nil {
		t.Fatalf("mount %s %s: %v: %s: the storage fault tests need root with CAP_SYS_ADMIN", strings.Join(args, " "), dir, err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmounting %s: %v", dir, err)
			}
		}
	})
	return dir
}

// fillDir writes a file into dir until its file system is full and
// returns the file's name.
func fillDir(t *testing.T, dir string) string {
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
