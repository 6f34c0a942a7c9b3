package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

func init() {
	caddy.RegisterModule(BoltStorage{})
}

// storageNamespace is the Caddy module namespace of storage backends:
// oauth.storage.bolt, and any other backend registered the same way
// (a PostgreSQL one registers oauth.storage.postgres).
const storageNamespace = "oauth.storage"

// StoreOpener is what a module in the oauth.storage namespace provides
// once provisioned: the identity of the data it reaches and a way to open
// it. Provision must not open or connect to anything, so that `caddy
// validate` works while a server runs; the app opens the store when it
// starts, through the process-wide pool (storepool.go).
type StoreOpener interface {
	// StoreKey identifies the data the store holds, prefixed with the
	// module name: "bolt:" and the absolute file path, or "postgres:"
	// and the DSN. Configs whose keys are equal share one open store,
	// one revocation set and one sweeper in the process, across
	// reloads. It may hold secrets (a DSN's password), so it is never
	// logged or shown in errors: use StoreName for those.
	StoreKey() string

	// StoreName describes the store for logs and errors, without
	// secrets: the file path, or a DSN without its password.
	StoreName() string

	// OpenStore opens the store. The pool calls it once per key while
	// any config holds that key, and closes the store (storage.Store's
	// Close) when the last config releases it. An error that means the
	// storage is down (as opposed to misconfigured) wraps
	// storage.ErrUnavailable, so that requests are answered 503.
	OpenStore() (storage.Store, error)
}

// SharedStore is a StoreOpener whose data other Caddy nodes may use at
// the same time (a database, as opposed to a file one process locks).
// The app then requires encrypted signing keys (key_encryption_key) and
// runs cluster-wide housekeeping on one node at a time.
type SharedStore interface {
	StoreOpener
	// Shared reports whether other nodes may use the same data.
	Shared() bool
}

// isShared reports whether o's data may be used by other nodes too.
func isShared(o StoreOpener) bool {
	s, ok := o.(SharedStore)
	return ok && s.Shared()
}

// BoltStorage is the oauth.storage.bolt module, the default backend: one
// bbolt file, for one Caddy process (bbolt allows one handle per file
// per process, and locks the file against other processes).
//
// In the Caddyfile:
//
//	storage bolt {
//		path <file>
//	}
type BoltStorage struct {
	// Path is the bbolt file that holds signing keys, grants and users.
	// It is created with mode 0600 in a 0700 directory. A relative path
	// is taken from Caddy's working directory. Default: `oauth/oauth.db`
	// in Caddy's data directory.
	Path string `json:"path,omitempty"`

	// abs is Path made absolute and clean: the pool key.
	abs string
}

// boltLockTimeout is how long opening waits for another process to
// release the file before saying that it is in use.
const boltLockTimeout = 3 * time.Second

// CaddyModule returns the Caddy module information.
func (BoltStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  storageNamespace + ".bolt",
		New: func() caddy.Module { return new(BoltStorage) },
	}
}

// Provision resolves the file path; it does not open the file.
func (b *BoltStorage) Provision(caddy.Context) error {
	path := b.Path
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "oauth", "oauth.db")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("bolt storage path %q: %w", path, err)
	}
	b.abs = filepath.Clean(abs)
	return nil
}

// StoreKey is "bolt:" and the absolute path: two configs that name one
// file, in any spelling, share one handle.
func (b *BoltStorage) StoreKey() string { return "bolt:" + b.abs }

// StoreName is the absolute path of the file.
func (b *BoltStorage) StoreName() string { return b.abs }

// OpenStore opens (or creates) the file.
func (b *BoltStorage) OpenStore() (storage.Store, error) {
	return bolt.Open(b.abs, boltLockTimeout)
}

// UnmarshalCaddyfile reads `storage bolt { path <file> }`; the dispenser
// is on the module name.
func (b *BoltStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.Errf("storage bolt takes no arguments; give the file as: storage bolt { path <file> }")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "path":
			if !d.NextArg() {
				return d.Err("storage bolt: path needs a file name")
			}
			b.Path = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unknown option %q in storage bolt (it takes: path)", d.Val())
		}
	}
	return nil
}

// storageModules lists the names of the registered storage modules, for
// the error that names an unknown one.
func storageModules() string {
	var names []string
	for _, m := range caddy.GetModules(storageNamespace) {
		names = append(names, m.ID.Name())
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// checkStorageModule says what to fix when name is not a registered
// storage module.
func checkStorageModule(name string) error {
	if name == "" {
		return fmt.Errorf("storage needs a module name (available: %s), for example: storage bolt { path /var/lib/caddy/oauth.db }", storageModules())
	}
	if _, err := caddy.GetModule(storageNamespace + "." + name); err != nil {
		return fmt.Errorf("storage module %q is not in this Caddy build; available: %s", name, storageModules())
	}
	return nil
}

// errStorageTwice is the error for a config with both storage forms.
var errStorageTwice = errors.New("storage and storage_path are both set; keep one: put the file in the storage module (storage bolt { path <file> }) and remove storage_path, or remove storage")

// parseStorageOption reads `storage <module> [{ … }]` in the oauth block
// into the module map of App.StorageRaw.
func parseStorageOption(d *caddyfile.Dispenser, a *App) error {
	if a.StorageRaw != nil {
		return d.Err("storage is given twice; keep one")
	}
	if !d.NextArg() {
		return d.Err(checkStorageModule("").Error())
	}
	name := d.Val()
	if err := checkStorageModule(name); err != nil {
		return d.Err(err.Error())
	}
	unm, err := caddyfile.UnmarshalModule(d, storageNamespace+"."+name)
	if err != nil {
		return err
	}
	var warnings []caddyconfig.Warning
	a.StorageRaw = caddyconfig.JSONModuleObject(unm, "module", name, &warnings)
	return nil
}

// provisionStorage loads the storage module (or the bolt default, at
// storage_path) into a.store.
func (a *App) provisionStorage(ctx caddy.Context) error {
	if a.StorageRaw == nil {
		b := &BoltStorage{Path: a.StoragePath}
		if err := b.Provision(ctx); err != nil {
			return fmt.Errorf("oauth: storage_path: %w", err)
		}
		a.store = b
		return nil
	}
	if a.StoragePath != "" {
		return fmt.Errorf("oauth: %w", errStorageTwice)
	}
	var head struct {
		Module string `json:"module"`
	}
	if err := json.Unmarshal(a.StorageRaw, &head); err != nil {
		return fmt.Errorf("oauth: storage must be an object such as {\"module\": \"bolt\", \"path\": \"/var/lib/caddy/oauth.db\"}: %w", err)
	}
	if err := checkStorageModule(head.Module); err != nil {
		return fmt.Errorf("oauth: %w", err)
	}
	mod, err := ctx.LoadModule(a, "StorageRaw")
	if err != nil {
		return fmt.Errorf("oauth: storage: %w", err)
	}
	st, ok := mod.(StoreOpener)
	if !ok {
		return fmt.Errorf("oauth: storage module %q (%T) does not implement caddymodule.StoreOpener", head.Module, mod)
	}
	a.store = st
	return nil
}

// Interface guards
var (
	_ StoreOpener           = (*BoltStorage)(nil)
	_ caddy.Provisioner     = (*BoltStorage)(nil)
	_ caddyfile.Unmarshaler = (*BoltStorage)(nil)
)
