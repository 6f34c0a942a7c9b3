package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

// clientCommand adds `caddy oauth client add|list|remove`.
func clientCommand() *cobra.Command {
	client := &cobra.Command{Use: "client", Short: "Manages the clients registered at run time (config clients change only in the config)"}
	add := &cobra.Command{Use: "add <client_id> --grant-types <type,...>", Short: "Registers a client and prints its secret (shown once)", Args: args(cobra.ExactArgs(1))}
	list := &cobra.Command{Use: "list", Short: "Lists the clients (config and run time)", Args: args(cobra.NoArgs)}
	remove := &cobra.Command{Use: "remove <client_id>", Short: "Removes a run-time client and revokes its tokens", Args: args(cobra.ExactArgs(1))}
	for _, c := range []*cobra.Command{add, list, remove} {
		adminFlags(c)
		client.AddCommand(c)
	}
	f := add.Flags()
	f.StringSlice("grant-types", nil, "Grant types (required), comma-separated: "+strings.Join(grants.SupportedGrantTypes, ", "))
	f.StringSlice("scopes", nil, "Scopes the client may be granted")
	f.StringSlice("audience", nil, "Resources its tokens are for")
	f.StringSlice("redirect-uri", nil, "Redirect URIs (for authorization_code)")
	f.StringSlice("post-logout-redirect-uri", nil, "Where sign-out may send the browser")
	f.String("auth-method", "", "client_secret_basic (default), client_secret_post or client_secret_jwt")
	f.Bool("public", false, "A public client: no secret, PKCE required")
	f.Bool("trusted", false, "Skip the consent page")
	f.Bool("pkce-optional", false, "Let this confidential client use the code flow without PKCE")
	f.Bool("resource-server", false, "An API that introspects tokens for its audience")
	f.String("access-token-format", "", "jwt (default) or opaque")
	f.Bool("dpop-bound", false, "The client must send a DPoP proof with every token request (dpop_bound_access_tokens)")
	f.Bool("require-par", false, "The client must push its authorization requests to /oauth/par (require_pushed_authorization_requests)")
	f.String("id-token-alg", "", "The algorithm of its ID tokens: RS256 (default) or the server's signing_alg")
	f.String("name", "", "The name the sign-in and consent pages show (default: the client id)")
	f.String("logo-uri", "", "An https URL of the client's logo, shown on the consent page")
	f.String("client-uri", "", "An https URL of the client's home page, linked from the consent page")
	f.String("policy-uri", "", "An https URL of the client's privacy policy, linked from the consent page")

	add.RunE = runE(func(c *cobra.Command, fl caddycmd.Flags) error {
		in := adminClient{Public: fl.Bool("public"), ClientSpec: grants.ClientSpec{ID: fl.Arg(0),
			AuthMethod: fl.String("auth-method"), AccessTokenFormat: fl.String("access-token-format"),
			Trusted: fl.Bool("trusted"), PKCEOptional: fl.Bool("pkce-optional"), ResourceServer: fl.Bool("resource-server"),
			DPoPBoundAccessTokens:              fl.Bool("dpop-bound"),
			RequirePushedAuthorizationRequests: fl.Bool("require-par"),
			IDTokenSignedResponseAlg:           fl.String("id-token-alg")}}
		in.GrantTypes, _ = fl.GetStringSlice("grant-types")
		in.Scopes, _ = fl.GetStringSlice("scopes")
		in.Audience, _ = fl.GetStringSlice("audience")
		in.RedirectURIs, _ = fl.GetStringSlice("redirect-uri")
		in.PostLogoutRedirectURIs, _ = fl.GetStringSlice("post-logout-redirect-uri")
		in.Name, in.LogoURI, in.ClientURI, in.PolicyURI = fl.String("name"), fl.String("logo-uri"), fl.String("client-uri"), fl.String("policy-uri")
		if len(in.GrantTypes) == 0 {
			return usageErrorf("--grant-types is required (one or more of %s)", strings.Join(grants.SupportedGrantTypes, ", "))
		}
		var out struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		if err := adminCall(fl, http.MethodPost, "/oauth/clients", in, &out); err != nil {
			return err
		}
		w := c.OutOrStdout()
		fmt.Fprintf(w, "client_id: %s\n", out.ClientID)
		if out.ClientSecret != "" {
			fmt.Fprintf(w, "client_secret: %s\n(shown only now: the server keeps only its SHA-256)\n", out.ClientSecret)
		}
		return nil
	})
	list.RunE = runE(func(c *cobra.Command, fl caddycmd.Flags) error {
		var cs []grants.ClientInfo
		if err := adminCall(fl, http.MethodGet, "/oauth/clients", nil, &cs); err != nil {
			return err
		}
		printClients(c.OutOrStdout(), cs)
		return nil
	})
	remove.RunE = runE(func(c *cobra.Command, fl caddycmd.Flags) error {
		if err := adminCall(fl, http.MethodDelete, "/oauth/clients/"+url.PathEscape(fl.Arg(0)), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "removed client %s and revoked its tokens\n", fl.Arg(0))
		return nil
	})
	return client
}

func printClients(w io.Writer, cs []grants.ClientInfo) {
	for _, c := range cs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.ID, c.Source, strings.Join(c.GrantTypes, ","), strings.Join(c.Scopes, " "))
	}
}
