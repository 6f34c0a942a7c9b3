package caddymodule

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// commandStorage is the storage that the config of a `caddy oauth`
// command (--config, or a Caddyfile in the working directory, the way
// Caddy's own commands find one) gives the oauth app.
type commandStorage struct {
	config string // the config file read; "" when there is none
	module string // the storage module's name: "bolt", "postgres", …
	path   string // the bolt file; "" for the default
}

// readCommandStorage reads the config of a command, when there is one.
// A --config that cannot be read is an error; a Caddyfile in the working
// directory that cannot be is not (there may be none).
func readCommandStorage(fl caddycmd.Flags) (commandStorage, error) {
	cfg, file, _, err := caddycmd.LoadConfig(fl.String("config"), fl.String("adapter"))
	if err != nil {
		if fl.String("config") == "" {
			return commandStorage{}, nil
		}
		return commandStorage{}, fmt.Errorf("reading the config %s: %w", fl.String("config"), err)
	}
	if len(cfg) == 0 {
		return commandStorage{}, nil
	}
	var c struct {
		Apps struct {
			OAuth *struct {
				Storage     json.RawMessage `json:"storage"`
				StoragePath string          `json:"storage_path"`
			} `json:"oauth"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return commandStorage{}, fmt.Errorf("reading the config %s: %w", file, err)
	}
	cs := commandStorage{config: file, module: "bolt"}
	if file == "" {
		cs.config = "the config"
	}
	switch {
	case c.Apps.OAuth == nil:
	case len(c.Apps.OAuth.Storage) > 0:
		var m struct {
			Module string `json:"module"`
			Path   string `json:"path"`
		}
		if err := json.Unmarshal(c.Apps.OAuth.Storage, &m); err != nil {
			return commandStorage{}, fmt.Errorf("reading the storage of %s: %w", cs.config, err)
		}
		cs.module, cs.path = m.Module, m.Path
	default:
		cs.path = c.Apps.OAuth.StoragePath
	}
	return cs, nil
}

// offlineFile chooses the bbolt file a user command opens when no
// server answers at addr: the one the config names (or --storage, which
// must then be the same file). A config whose storage is not a file of
// this process (PostgreSQL, shared by the nodes) is refused: the command
// acts on it only through a running node, never on some bbolt file that
// happens to be at the default path.
func offlineFile(fl caddycmd.Flags, addr string) (string, error) {
	cs, err := readCommandStorage(fl)
	if err != nil {
		return "", err
	}
	flag := fl.String("storage")
	if cs.config == "" {
		return flag, nil
	}
	if cs.module != "bolt" {
		return "", fmt.Errorf("no server answers at %s, and the storage of %s is %q (oauth.storage.%s), which this command reaches only through a running Caddy node, not by opening it itself: start a node, or pass the admin address of any running node with --address (all nodes share the same storage)",
			addr, cs.config, cs.module, cs.module)
	}
	if flag != "" && cs.path != "" && !samePath(flag, cs.path) {
		return "", fmt.Errorf("--storage %s is not the storage file of %s (%s): leave out --storage, or pass the config of that file", flag, cs.config, cs.path)
	}
	if flag == "" {
		flag = cs.path
	}
	return flag, nil
}

// samePath reports whether two spellings name one file.
func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// backupRefusal says why `caddy oauth backup` cannot copy the storage
// the command's config names, or "" when it can (a bbolt file, or no
// config to tell).
func backupRefusal(fl caddycmd.Flags) (string, error) {
	cs, err := readCommandStorage(fl)
	if err != nil || cs.config == "" || cs.module == "bolt" {
		return "", err
	}
	if cs.module == "postgres" {
		return fmt.Sprintf("the storage of %s is PostgreSQL: caddy oauth backup copies bbolt files only; back up the database with pg_dump (for example: pg_dump --format=custom --file=oauth.dump \"$OAUTH_PG_DSN\"), which needs no running Caddy and copies every node's data at once", cs.config), nil
	}
	return fmt.Sprintf("the storage of %s is %q: caddy oauth backup copies bbolt files only; back it up with that backend's own tools", cs.config, cs.module), nil
}
