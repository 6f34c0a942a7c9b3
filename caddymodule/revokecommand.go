package caddymodule

import (
	"fmt"
	"net/http"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// revokeCommand adds `caddy oauth revoke --subject X | --client Y`.
func revokeCommand() *cobra.Command {
	c := &cobra.Command{Use: "revoke --subject <user> | --client <client_id>",
		Short: "Revokes every grant and token of a user (--subject) or a client (--client)", Args: args(cobra.NoArgs)}
	adminFlags(c)
	c.Flags().String("subject", "", "The user (or client acting for itself) whose tokens to revoke")
	c.Flags().String("client", "", "The client whose tokens to revoke")
	c.RunE = runE(func(c *cobra.Command, fl caddycmd.Flags) error {
		in := revokeRequest{Subject: fl.String("subject"), ClientID: fl.String("client")}
		if (in.Subject == "") == (in.ClientID == "") {
			return usageErrorf("give exactly one of --subject and --client")
		}
		var out struct {
			N int `json:"grants_revoked"`
		}
		if err := adminCall(fl, http.MethodPost, "/oauth/revoke", in, &out); err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "revoked %d grant(s) and every access token issued until now\n", out.N)
		return nil
	})
	return c
}
