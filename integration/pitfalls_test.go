package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// pitfallsCaddyfile holds the examples of docs/caddyfile-pitfalls.md,
// wrong and right, each on its own port.
const pitfallsCaddyfile = `{
	admin localhost:2999
	oauth {
		issuer http://localhost:19540
		storage_path %[1]s
	}
}

http://localhost:19540 {
	oauth_server
}

# Wrong: inside route, directives run in the order written.
http://localhost:19541 {
	route {
		reverse_proxy %[2]s
		oauth_protect {
			audience http://localhost:19541
		}
	}
}

# Right: the gate first.
http://localhost:19542 {
	route {
		oauth_protect {
			audience http://localhost:19542
		}
		reverse_proxy %[2]s
	}
}

# Wrong: the metadata URL is not under /billing/, so it never reaches the gate.
http://localhost:19543 {
	handle_path /billing/* {
		oauth_protect {
			audience http://localhost:19543/billing
		}
		reverse_proxy %[2]s
	}
}

# Right: the same gate also answers the metadata URL.
(billing_gate) {
	oauth_protect {
		audience http://localhost:19544/billing
	}
}
http://localhost:19544 {
	handle /.well-known/oauth-protected-resource/billing {
		import billing_gate
	}
	handle_path /billing/* {
		import billing_gate
		reverse_proxy %[2]s
	}
}
`

// TestCaddyfilePitfalls checks what docs/caddyfile-pitfalls.md says of
// Caddy's ordering: reverse_proxy before oauth_protect inside route
// serves the app without a token; oauth_protect inside handle_path
// advertises a metadata URL that never reaches it unless a handle for
// that URL holds the same gate.
func TestCaddyfilePitfalls(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(pitfallsCaddyfile, storagePath(t), up.addr()))

	get := func(url string) (*http.Response, string) {
		return httpDo(t, newRequest(t, http.MethodGet, url, nil))
	}
	if resp, body := get("http://localhost:19541/"); resp.StatusCode != http.StatusOK || body != "legacy app" {
		t.Fatalf("route { reverse_proxy; oauth_protect }: %d %q; the docs say the app is served without a token", resp.StatusCode, body)
	}
	if resp, body := get("http://localhost:19542/"); resp.StatusCode != http.StatusUnauthorized || body == "legacy app" {
		t.Fatalf("route { oauth_protect; reverse_proxy }: %d %q, want 401", resp.StatusCode, body)
	}

	for _, tc := range []struct {
		port        string
		metadataOK  bool
		description string
	}{
		{"19543", false, "oauth_protect only inside handle_path"},
		{"19544", true, "the gate also in a handle for the metadata URL"},
	} {
		resp, _ := get("http://localhost:" + tc.port + "/billing/invoices")
		wa := resp.Header.Get("WWW-Authenticate")
		want := `resource_metadata="http://localhost:` + tc.port + `/.well-known/oauth-protected-resource/billing"`
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(wa, want) {
			t.Fatalf("%s: %d, WWW-Authenticate %q; want 401 with %s", tc.description, resp.StatusCode, wa, want)
		}
		resp, body := get("http://localhost:" + tc.port + "/.well-known/oauth-protected-resource/billing")
		var doc struct {
			Resource string `json:"resource"`
		}
		ok := resp.StatusCode == http.StatusOK && json.Unmarshal([]byte(body), &doc) == nil &&
			doc.Resource == "http://localhost:"+tc.port+"/billing"
		if ok != tc.metadataOK {
			t.Errorf("%s: metadata URL answered %d %q; served: %v, want %v", tc.description, resp.StatusCode, body, ok, tc.metadataOK)
		}
	}
}
