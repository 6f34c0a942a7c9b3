package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

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

// keysCommand adds `caddy oauth keys list|rotate`.
func keysCommand() *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "Lists or rotates the signing keys of the running server"}
	list := &cobra.Command{Use: "list", Short: "Lists the signing keys (newest first)", Args: cobra.NoArgs}
	rotate := &cobra.Command{Use: "rotate", Short: "Makes a new signing key; old ones verify until their tokens expired", Args: cobra.NoArgs}
	for _, c := range []*cobra.Command{list, rotate} {
		adminFlags(c)
		keys.AddCommand(c)
	}
	list.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		var ks []grants.KeyInfo
		return exitCode(func() error {
			if err := adminCall(fl, http.MethodGet, "/oauth/keys", nil, &ks); err != nil {
				return err
			}
			printKeys(list.OutOrStdout(), ks)
			return nil
		})
	})
	rotate.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		var res struct{ Kid string }
		return exitCode(func() error {
			if err := adminCall(fl, http.MethodPost, "/oauth/keys/rotate", nil, &res); err != nil {
				return err
			}
			fmt.Fprintf(rotate.OutOrStdout(), "new signing key %s\n", res.Kid)
			return nil
		})
	})
	return keys
}

func printKeys(w io.Writer, ks []grants.KeyInfo) {
	for _, k := range ks {
		state := "verifies"
		switch {
		case k.Current:
			state = "signs"
		case k.Retires != nil:
			state = "retires " + k.Retires.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\tcreated %s\t%s\n", k.ID, k.Alg, k.Created.UTC().Format(time.RFC3339), state)
	}
}

// exitCode runs a command body and turns its error into Caddy's exit code.
func exitCode(run func() error) (int, error) {
	if err := run(); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return caddy.ExitCodeSuccess, nil
}
