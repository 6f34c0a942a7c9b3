package bolt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Backup implements storage.Backuper with bbolt's transaction copy
// (Tx.WriteTo): the copy is written inside one read transaction, so it
// is the file as of that transaction's start, and writers go on
// meanwhile. The copy is a bbolt file like the store's own, ready to be
// opened in its place.
//
// While a backup runs, bbolt cannot reuse the pages that writers free
// (the read transaction may still need them), so the file may grow by
// what is written meanwhile; a backup to a slow writer keeps it so for
// longer.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("oauth storage: backup: %w", err)
	}
	cw := &ctxWriter{ctx: ctx, w: w}
	var n int64
	err := s.protect(func() error {
		return s.db.View(func(btx *bbolt.Tx) error {
			var err error
			n, err = btx.WriteTo(cw)
			return err
		})
	})
	switch {
	case err == nil:
		return n, nil
	case cw.err != nil:
		// The writer's own failure (the client went away, a full disk
		// at the other end): not the store's.
		return n, fmt.Errorf("oauth storage: backup of %s: writing the copy: %w", s.path, cw.err)
	case errors.Is(err, storage.ErrUnavailable):
		return n, err
	}
	return n, fmt.Errorf("%w: backup of %s: %w", storage.ErrUnavailable, s.path, err)
}

// ctxWriter stops a copy when its context is done, and keeps the
// writer's own error apart from the store's.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
	err error
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return 0, err
	}
	n, err := c.w.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

// CheckFile opens the bbolt file at path read-only (it must not be in use
// by a writer) and checks that it is a whole, consistent store: every
// page the file's metadata refers to is present and reachable once. It
// is how a backup is verified before it is trusted.
func CheckFile(path string) (err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return fmt.Errorf("%s is empty", path)
	}
	var file *os.File
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		if file == nil {
			file = f
		}
		return f, err
	}
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				unlockFile(file)
				_ = file.Close()
			}
			err = fmt.Errorf("%s is not a valid storage file: %v", path, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second, OpenFile: openFile})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("%s is locked by another process", path)
	}
	if err != nil {
		return fmt.Errorf("%s is not a valid storage file: %w", path, err)
	}
	defer db.Close()
	if err := checkSize(db, file); err != nil {
		return fmt.Errorf("%s is not a valid storage file: %w", path, err)
	}
	return db.View(func(tx *bbolt.Tx) error {
		var errs []error
		// Drain the channel whole: its sender holds the transaction.
		for err := range tx.Check() {
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s is damaged: %w", path, errors.Join(errs...))
		}
		return nil
	})
}

var _ storage.Backuper = (*Store)(nil)
