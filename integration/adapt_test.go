package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestCaddyfileAdapt checks testdata/*.caddyfiletest in Caddy's own golden
// format: a Caddyfile, a line of ----------, then either the expected JSON
// or a fragment of the expected adapter error. This pins the JSON config
// of the oauth global option and both directives.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.caddyfiletest files")
	}
	newlines := regexp.MustCompile(`\r?\n`)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(string(data), "----------")
			if len(parts) != 2 {
				t.Fatalf("want one ---------- separator, got %d parts", len(parts))
			}
			caddyfile := strings.TrimSpace(parts[0]) + "\n"
			expected := newlines.ReplaceAllString(strings.TrimSpace(parts[1]), "\n")
			if strings.Contains(caddyfile, "\torder ") || strings.HasPrefix(caddyfile, "order ") {
				t.Fatal("golden Caddyfiles must not need an order line")
			}
			if strings.HasPrefix(expected, "{") {
				if !caddytest.CompareAdapt(t, file, caddyfile, "caddyfile", expected) {
					t.Errorf("adapting %s does not give the expected JSON (diff above)", file)
				}
				return
			}
			_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
			if err == nil {
				t.Fatalf("adapting %s succeeded; want an error containing %q", file, expected)
			}
			if !strings.Contains(newlines.ReplaceAllString(err.Error(), "\n"), expected) {
				t.Errorf("error %q does not contain %q", err, expected)
			}
		})
	}
}

// TestDirectiveOrder: without an order line, oauth_server runs before
// respond and oauth_protect before request_header, respond and
// reverse_proxy, whatever order the Caddyfile lists them in.
func TestDirectiveOrder(t *testing.T) {
	cfg := render(baseCaddyfile, "/tmp/unused.db", "127.0.0.1:19000")
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
					Routes []any    `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	byPort := map[string][]string{}
	for _, srv := range doc.Apps.HTTP.Servers {
		var names []string
		collectHandlers(srv.Routes, &names)
		for _, l := range srv.Listen {
			byPort[l] = names
		}
	}
	for port, order := range map[string][]string{
		":19100": {"oauth_server", "static_response"},
		":19101": {"oauth_protect", "headers", "reverse_proxy"},
		":19102": {"oauth_protect", "static_response"},
	} {
		got := byPort["127.0.0.1"+port]
		if got == nil {
			got = byPort[port]
		}
		var filtered []string
		for _, h := range got {
			if slices.Contains(order, h) {
				filtered = append(filtered, h)
			}
		}
		if !slices.Equal(filtered, order) {
			t.Errorf("server on %s runs handlers %q, want this order: %q", port, got, order)
		}
	}
}

// collectHandlers lists handler names depth-first, in the order a request
// meets them.
func collectHandlers(v any, out *[]string) {
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			collectHandlers(e, out)
		}
	case map[string]any:
		if h, ok := t["handler"].(string); ok && h != "subroute" {
			*out = append(*out, h)
		}
		for _, key := range []string{"handle", "routes"} {
			if sub, ok := t[key]; ok {
				collectHandlers(sub, out)
			}
		}
	}
}

// TestCaddyfileExample keeps the quick start's Caddyfile.example safe to
// copy: its secrets are runtime placeholders ({env.VAR}), so that they
// reach neither the adapted JSON nor autosave.json nor GET /config/ (a
// {$VAR:default} is replaced at adapt time and would), every variable it
// names has a demo value in examples/demo.env (the quick start's
// --envfile), and its demo sites listen on loopback only.
func TestCaddyfileExample(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	var code strings.Builder // src without its comment lines
	for _, line := range strings.Split(string(src), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			code.WriteString(line + "\n")
		}
	}
	if strings.Contains(code.String(), "{$") {
		t.Errorf("Caddyfile.example uses an adapt-time {$VAR} placeholder; secrets must be {env.VAR}")
	}
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatalf("adapting Caddyfile.example: %v", err)
	}
	env, err := os.ReadFile(filepath.Join("..", "examples", "demo.env"))
	if err != nil {
		t.Fatal(err)
	}
	demo := map[string]string{}
	for _, line := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			demo[k] = v
		}
	}
	for _, m := range regexp.MustCompile(`\{env\.([A-Z0-9_]+)\}`).FindAllStringSubmatch(code.String(), -1) {
		v, ok := demo[m[1]]
		if !ok {
			t.Errorf("Caddyfile.example uses {env.%s}, which examples/demo.env does not set", m[1])
			continue
		}
		if strings.Contains(string(out), v) {
			t.Errorf("the adapted JSON contains the value of %s", m[1])
		}
		if !strings.Contains(string(out), "{env."+m[1]+"}") {
			t.Errorf("the adapted JSON lacks the placeholder {env.%s}", m[1])
		}
	}
	if len(demo) == 0 {
		t.Fatal("examples/demo.env sets nothing: the test checks nothing")
	}
	var doc struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Apps.HTTP.Servers) == 0 {
		t.Fatal("no servers in the adapted example")
	}
	for name, srv := range doc.Apps.HTTP.Servers {
		for _, l := range srv.Listen {
			if !strings.HasPrefix(l, "127.0.0.1:") && !strings.HasPrefix(l, "tcp/127.0.0.1:") {
				t.Errorf("server %s listens on %q, not on loopback only", name, l)
			}
		}
	}
}

// TestReadmeCaddyfiles: every Caddyfile a reader copies from the README
// or from examples/ adapts, without warnings.
func TestReadmeCaddyfiles(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```caddyfile\n(.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) < 3 {
		t.Fatalf("README.md has %d caddyfile blocks; want the sign-in, several-nodes and DPoP/mTLS ones", len(blocks))
	}
	sources := map[string][]byte{}
	for i, b := range blocks {
		sources["README.md block "+string(rune('1'+i))] = b[1]
	}
	examples, _ := filepath.Glob(filepath.Join(repoRoot, "examples", "*", "Caddyfile"))
	for _, f := range examples {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources[f] = data
	}
	for name, src := range sources {
		_, warns, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile"})
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		for _, w := range warns {
			t.Errorf("%s: warning %s", name, w.String())
		}
	}
}
