package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

// keysCommand adds `caddy oauth keys list|rotate`.
func keysCommand() *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "Lists or rotates the signing keys of the running server"}
	list := &cobra.Command{Use: "list", Short: "Lists the signing keys (newest first)", Args: args(cobra.NoArgs)}
	rotate := &cobra.Command{Use: "rotate", Short: "Makes a new signing key; old ones verify until their tokens expired", Args: args(cobra.NoArgs)}
	for _, c := range []*cobra.Command{list, rotate} {
		adminFlags(c)
		keys.AddCommand(c)
	}
	list.RunE = runE(func(c *cobra.Command, fl caddycmd.Flags) error {
		var ks []grants.KeyInfo
		if err := adminCall(fl, http.MethodGet, "/oauth/keys", nil, &ks); err != nil {
			return err
		}
		printKeys(c.OutOrStdout(), ks)
		return nil
	})
	rotate.RunE = runE(func(c *cobra.Command, fl caddycmd.Flags) error {
		var res struct{ Kid string }
		if err := adminCall(fl, http.MethodPost, "/oauth/keys/rotate", nil, &res); err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "new signing key %s\n", res.Kid)
		return nil
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
