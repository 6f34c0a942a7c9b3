//go:build windows || plan9 || solaris || aix || android

package bolt

import "os"

// unlockFile does nothing here: bbolt's lock on these platforms (fcntl or
// LockFileEx) goes away when the file is closed.
func unlockFile(*os.File) {}
