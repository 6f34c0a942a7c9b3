package caddymodule

import (
	"slices"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// TestOAuthCommandTree: `caddy oauth` offers every subcommand, each with
// the flags that find the running server.
func TestOAuthCommandTree(t *testing.T) {
	reg, ok := caddycmd.Commands()["oauth"]
	if !ok {
		t.Fatal("caddy oauth is not registered")
	}
	root := &cobra.Command{Use: reg.Name}
	reg.CobraFunc(root)
	var got []string
	var walk func(c *cobra.Command, path string)
	walk = func(c *cobra.Command, path string) {
		if len(c.Commands()) == 0 {
			var flags []string
			for _, f := range []string{"address", "config", "adapter", "storage", "claim"} {
				if c.Flags().Lookup(f) != nil {
					flags = append(flags, f)
				}
			}
			if c.RunE == nil {
				t.Errorf("%s does nothing", path)
			}
			got = append(got, path+" "+strings.Join(flags, ","))
			return
		}
		for _, sub := range c.Commands() {
			walk(sub, strings.TrimSpace(path+" "+sub.Name()))
		}
	}
	walk(root, "")
	slices.Sort(got)
	want := []string{
		"backup address,config,adapter",
		"client add address,config,adapter",
		"client list address,config,adapter",
		"client remove address,config,adapter",
		"keys list address,config,adapter",
		"keys rotate address,config,adapter",
		"revoke address,config,adapter",
		"user add address,config,adapter,storage,claim",
		"user list address,config,adapter,storage,claim",
		"user passwd address,config,adapter,storage,claim",
		"user remove address,config,adapter,storage,claim",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("caddy oauth offers\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
