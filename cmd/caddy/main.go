// Command caddy is standard Caddy with the caddy-oauthgate modules linked
// in, so `go run ./cmd/caddy` works without xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/oauthgate/caddy-oauthgate"
)

func main() {
	caddycmd.Main()
}
