//go:build !windows && !plan9 && !solaris && !aix && !android

package bolt

import (
	"os"
	"syscall"
)

// unlockFile releases the flock bbolt takes (on these platforms, the same
// build constraint as bbolt's bolt_unix.go) on a file whose Open failed
// half-way. Closing the descriptor is not enough while bbolt's memory map
// of the file is still alive.
func unlockFile(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
