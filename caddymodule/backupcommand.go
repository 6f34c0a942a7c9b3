package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

// backupCommand adds `caddy oauth backup <file>`.
func backupCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "backup <file> [--force]",
		Short: "Writes a consistent copy of the running server's storage to <file>",
		Long: `
Writes a consistent copy of the running server's storage file (signing
keys, users and clients added at run time, grants, sessions) to <file>,
through the admin API, while the server goes on serving.

The copy is written to a temporary file next to <file>, checked, synced
to disk and then renamed, so <file> is either the whole backup or not
there. Its mode is 0600: it holds the signing keys, so protect it like a
TLS private key. An existing <file> is kept unless --force is given.

To restore, stop Caddy, put the file in place of storage_path (mode
0600) and start Caddy again.

This copies a bbolt storage file. PostgreSQL storage is backed up with
the database's own tools (pg_dump), not through Caddy: the command
refuses when --config names such a storage, and the server answers 501.
`,
		Args: args(cobra.ExactArgs(1)),
	}
	adminFlags(c)
	c.Flags().Bool("force", false, "Replace <file> if it exists")
	c.RunE = runE(func(c *cobra.Command, fl caddycmd.Flags) error {
		return runBackup(c.OutOrStdout(), fl, fl.Arg(0), fl.Bool("force"))
	})
	return c
}

// runBackup fetches the backup into a temporary file in target's
// directory and renames it to target once it is whole and on disk.
func runBackup(out io.Writer, fl caddycmd.Flags, target string, force bool) error {
	began := time.Now()
	switch target {
	case "":
		return usageErrorf("name the file to write the backup to")
	case "-":
		// Not standard output: a backup is checked and synced as a file
		// before it is put in place.
		return usageErrorf("the backup goes to a file, not to standard output: name the file")
	}
	if fi, err := os.Stat(target); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory: name the file to write the backup to", target)
		}
		if !force {
			return fmt.Errorf("%s already exists: choose another name, or pass --force to replace it", target)
		}
	}
	if why, err := backupRefusal(fl); err != nil {
		return err
	} else if why != "" {
		return errors.New(why)
	}
	dir := filepath.Dir(target)
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return err
	}
	resp, err := caddycmd.AdminAPIRequest(addr, http.MethodGet, "/oauth/backup", nil, nil)
	if err != nil {
		if strings.Contains(err.Error(), "performing request") {
			return fmt.Errorf("no Caddy server answers at %s: start it, or pass its admin address with --address or --config (a stopped server's storage file can be copied as it is)", addr)
		}
		return decodeAdminError(err)
	}
	defer resp.Body.Close()
	// CreateTemp makes the file with mode 0600.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating the backup file in %s: %w", dir, err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(tmp, resp.Body)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("the server cut the backup short after %d bytes (see its log); nothing was written to %s", n, target)
		}
		return fmt.Errorf("writing the backup (nothing was written to %s): %w", target, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing the backup to disk (nothing was written to %s): %w", target, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing the backup (nothing was written to %s): %w", target, err)
	}
	if err := bolt.CheckFile(tmp.Name()); err != nil {
		return fmt.Errorf("the backup received is not a valid storage file, so nothing was written to %s: %w", target, err)
	}
	if err := place(tmp.Name(), target, force); err != nil {
		return err
	}
	done = true
	// The rename is durable once the directory is.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	fmt.Fprintf(out, "wrote backup %s: %d bytes in %s\n", target, n, time.Since(began).Round(time.Millisecond))
	return nil
}

// place moves the finished backup tmp to target. Without force it links
// instead of renaming, which fails rather than replace a target that
// appeared meanwhile.
func place(tmp, target string, force bool) error {
	if force {
		if err := os.Rename(tmp, target); err != nil {
			return fmt.Errorf("renaming the backup to %s: %w", target, err)
		}
		return nil
	}
	err := os.Link(tmp, target)
	switch {
	case errors.Is(err, os.ErrExist):
		return fmt.Errorf("%s already exists: choose another name, or pass --force to replace it", target)
	case err != nil:
		// A file system without hard links: check, then rename.
		if _, serr := os.Lstat(target); serr == nil {
			return fmt.Errorf("%s already exists: choose another name, or pass --force to replace it", target)
		}
		if err := os.Rename(tmp, target); err != nil {
			return fmt.Errorf("renaming the backup to %s: %w", target, err)
		}
		return nil
	}
	return os.Remove(tmp)
}
