package caddymodule

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/oauthgate/caddy-oauthgate/grants"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// TestOAuthCommandTree: `caddy oauth` offers every subcommand, each with
// the flags that find the running server, and --claim only where a user's
// claims are set.
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
		"user list address,config,adapter,storage",
		"user passwd address,config,adapter,storage,claim",
		"user remove address,config,adapter,storage",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("caddy oauth offers\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// runOAuth runs `caddy oauth <argv...>` as Caddy's main would and returns
// standard output, standard error and the exit code main would give.
func runOAuth(t *testing.T, argv ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := &cobra.Command{Use: "oauth"}
	caddycmd.Commands()["oauth"].CobraFunc(root)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(argv)
	code = exitCodeOf(root.Execute())
	return out.String(), errb.String(), code
}

// exitCodeOf is what caddycmd.Main does with the error of a command: the
// ExitCode of Caddy's (unexported) exit error, else 1 for any error.
func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.Struct {
		if f := v.Elem().FieldByName("ExitCode"); f.IsValid() && f.CanInt() {
			return int(f.Int())
		}
	}
	return 1
}

// A refusal of the admin API is printed as its message on one line, not
// as Caddy's "caddy responded with error: HTTP 409: {...}" with escaped
// JSON, and exits 1; a wrong command line exits 2, also with one line.
func TestOAuthCommandErrors(t *testing.T) {
	const msg = `client "billing-service" is defined in the Caddy config; change it there`
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// What Caddy's admin server writes for a caddy.APIError.
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/oauth/clients/billing-service", "/oauth/users/alice":
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"error":"` + strings.ReplaceAll(msg, `"`, `\"`) + `"}` + "\n"))
		default:
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("upstream\nfailed"))
		}
	}))
	defer admin.Close()
	addr := strings.TrimPrefix(admin.URL, "http://")
	for _, tc := range []struct {
		argv       []string
		wantStderr string // exact; or a prefix when it ends in "*"
		wantCode   int
	}{
		{[]string{"client", "remove", "billing-service", "--address", addr}, "error: " + msg + "\n", 1},
		{[]string{"user", "remove", "alice", "--address", addr}, "error: " + msg + "\n", 1},
		{[]string{"keys", "list", "--address", addr}, "error: upstream failed\n", 1},
		{[]string{"client", "add", "--address", addr}, "error: accepts 1 arg(s), received 0; usage: oauth client add <client_id> --grant-types <type,...> [flags]\n", 2},
		{[]string{"client", "add", "x", "--address", addr}, "error: --grant-types is required*", 2},
		{[]string{"client", "list", "extra", "--address", addr}, "error: unknown command \"extra\"*", 2},
		{[]string{"revoke", "--address", addr}, "error: give exactly one of --subject and --client\n", 2},
		{[]string{"keys", "rotate", "--bogus"}, "error: unknown flag: --bogus; see oauth keys rotate --help\n", 2},
		{[]string{"user", "remove", "alice", "--claim", "a=b"}, "error: unknown flag: --claim*", 2},
		{[]string{"backup", "", "--address", addr}, "error: name the file to write the backup to*", 2},
		{[]string{"backup", "-", "--address", addr}, "error: the backup goes to a file, not to standard output*", 2},
	} {
		_, stderr, code := runOAuth(t, tc.argv...)
		ok := stderr == tc.wantStderr
		if p, found := strings.CutSuffix(tc.wantStderr, "*"); found {
			ok = strings.HasPrefix(stderr, p) && strings.Count(stderr, "\n") == 1 && strings.HasSuffix(stderr, "\n")
		}
		if !ok || code != tc.wantCode {
			t.Errorf("caddy oauth %s: exit %d, stderr %q; want exit %d, stderr %q", strings.Join(tc.argv, " "), code, stderr, tc.wantCode, tc.wantStderr)
		}
	}
}

// Each subcommand's help shows the flags that apply to it, client add
// names every grant type the server accepts, and `caddy oauth --help`
// describes every group and the exit codes.
func TestOAuthCommandHelp(t *testing.T) {
	out, _, code := runOAuth(t, "client", "add", "--help")
	if code != 0 {
		t.Fatalf("client add --help: exit %d", code)
	}
	for _, g := range grants.SupportedGrantTypes {
		if !strings.Contains(out, g) {
			t.Errorf("client add --help does not name grant type %s:\n%s", g, out)
		}
	}
	for _, f := range []string{"--pkce-optional", "--id-token-alg", "--public", "--redirect-uri"} {
		if !strings.Contains(out, f) {
			t.Errorf("client add --help lacks %s", f)
		}
	}
	for _, argv := range [][]string{{"client", "list", "--help"}, {"client", "remove", "--help"}, {"user", "list", "--help"}, {"user", "remove", "--help"}} {
		out, _, _ := runOAuth(t, argv...)
		for _, f := range []string{"--grant-types", "--claim", "--subject"} {
			if strings.Contains(out, f) {
				t.Errorf("%s shows %s, which does not apply", strings.Join(argv, " "), f)
			}
		}
	}
	long := caddycmd.Commands()["oauth"].Long
	for _, s := range []string{"user ", "client ", "keys ", "revoke ", "Exit status: 0", "1 the server refused", "2 the command line is wrong"} {
		if !strings.Contains(long, s) {
			t.Errorf("caddy oauth --help does not describe %q", s)
		}
	}
}

// A POST-only admin route answers GET with 405 and Allow: POST, a GET-only
// one answers POST with Allow: GET, before any engine is needed.
func TestAdminMethodNotAllowed(t *testing.T) {
	for _, tc := range []struct {
		method, path, allow string
		status              int
	}{
		{http.MethodGet, "/oauth/keys/rotate", "POST", http.StatusMethodNotAllowed},
		{http.MethodGet, "/oauth/revoke", "POST", http.StatusMethodNotAllowed},
		{http.MethodPost, "/oauth/keys", "GET", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/oauth/users", "GET, POST", http.StatusMethodNotAllowed},
		{http.MethodGet, "/oauth/users/alice", "PUT, DELETE", http.StatusMethodNotAllowed},
		{http.MethodGet, "/oauth/clients/x", "DELETE", http.StatusMethodNotAllowed},
		{http.MethodGet, "/oauth/nothing", "", http.StatusNotFound},
		{http.MethodGet, "/oauth/keys/other", "", http.StatusNotFound},
	} {
		w := httptest.NewRecorder()
		err := routeAdmin(w, httptest.NewRequest(tc.method, tc.path, nil), nil)
		var ae caddy.APIError
		if !errors.As(err, &ae) || ae.HTTPStatus != tc.status || w.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %v, Allow %q; want %d, Allow %q", tc.method, tc.path, err, w.Header().Get("Allow"), tc.status, tc.allow)
		}
	}
}
