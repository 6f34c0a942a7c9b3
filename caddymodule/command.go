package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "oauth",
		Usage: "user|client|keys|revoke|backup ...",
		Short: "Manages caddy-oauthgate users, clients, signing keys and revocations, and makes backups",
		Long: `
Manages the users who can sign in at the oauth_server login page.

The command talks to the running server through its admin API (--address,
or the admin address of --config, or localhost:2019). When no server
answers there, it opens the storage file itself (--storage, default
oauth/oauth.db in Caddy's data directory); that works only while no server
holds the file. Users defined in the Caddy config are listed but can only
be changed in the config.

  caddy oauth user add <name> [--claim email=a@example.com]...
  caddy oauth user passwd <name>   (ends the user's sessions and grants)
  caddy oauth user remove <name>
  caddy oauth user list

Passwords are read from the terminal without echo, or as one line from
standard input. They are hashed with bcrypt here; only the hash is sent.

The following need the running server:

  caddy oauth client add <id> --grant-types client_credentials [--scopes a,b] [--audience URL]...
  caddy oauth client list
  caddy oauth client remove <id>
  caddy oauth revoke --subject <user> | --client <id>
  caddy oauth keys list
  caddy oauth keys rotate
  caddy oauth backup <file> [--force]   (a consistent copy of the storage file)
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(userCommand(), keysCommand(), clientCommand(), revokeCommand(), backupCommand())
		},
	})
}

// adminFlags adds the flags that locate the running server's admin API.
func adminFlags(c *cobra.Command) {
	c.Flags().String("address", "", "The admin API address of the running server")
	c.Flags().StringP("config", "c", "", "A config file to read the admin address from")
	c.Flags().StringP("adapter", "a", "", "The adapter of --config")
}

// adminCall sends one request to the running server's admin API and
// decodes a JSON answer into out (when not nil). It says plainly when no
// server answers.
func adminCall(fl caddycmd.Flags, method, uri string, in, out any) error {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return err
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	var hdr http.Header
	if in != nil {
		hdr = http.Header{"Content-Type": {"application/json"}}
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, hdr, body)
	if err != nil {
		if strings.Contains(err.Error(), "performing request") {
			return fmt.Errorf("no Caddy server answers at %s: start it (caddy run --config ...), or pass its admin address with --address or --config", addr)
		}
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// exitCode runs a command body and turns its error into Caddy's exit code.
func exitCode(run func() error) (int, error) {
	if err := run(); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return caddy.ExitCodeSuccess, nil
}
