package caddymodule

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// everyOption uses every option of the oauth global option, aliases
// included, and repeats the list options so appending is checked.
const everyOption = "oauth {\n" +
	" issuer https://as.test\n storage_path /tmp/o.db\n signing_alg EdDSA\n" +
	" access_token_ttl 5m\n refresh_token_ttl 48h\n refresh_token_idle_ttl 24h\n" +
	" refresh_grace_period 30s\n session_ttl 1h\n key_rotation 720h\n" +
	" key_encryption_key {env.KEK}\n sweep_interval 2m\n templates_dir /t\n logo /l.png\n" +
	" login_max_failures 7\n behind_tls_proxy\n seal_plain_keys\n" +
	" dpop_nonce\n dpop_signing_algs ES256 EdDSA\n dpop_signing_algs PS256\n" +
	" device_code_ttl 15m\n device_poll_interval 2s\n" +
	" scope_description invoices:read \"Read your invoices\"\n scope_description openid \"Sign you in\"\n" +
	" client web {\n  name \"Billing portal\"\n  logo_uri https://w.test/logo.png\n  client_uri https://w.test/\n  policy_uri https://w.test/privacy\n  secret s3cret\n  auth_method client_secret_post\n" +
	"  grant_types authorization_code refresh_token\n  grant_types client_credentials\n" +
	"  scopes a b\n  audience https://api.test\n  redirect_uri https://w.test/cb\n" +
	"  redirect_uris https://w.test/cb2\n  post_logout_redirect_uri https://w.test/bye\n" +
	"  post_logout_redirect_uris https://w.test/bye2\n  trusted\n  pkce_optional\n" +
	"  access_token_format opaque\n  id_token_signed_response_alg ES256\n  dpop_bound_access_tokens\n" +
	"  exchange {\n   audience urn:a urn:b\n   resource https://r.test/\n  }\n }\n" +
	" client spa {\n  public\n  secret_hash sha256:" + "abababababababababababababababababababababababababababababababab" + "\n" +
	"  jwks_file /k.json\n  resource_server\n }\n" +
	" client jwt {\n  auth_method private_key_jwt\n  jwks `{\"keys\":[]}`\n }\n" +
	" client uri {\n  jwks_uri https://k.test/jwks\n }\n" +
	" trust_issuer https://idp.test {\n  jwks_uri https://idp.test/jwks\n  subject_claim email\n" +
	"  map_subject local_users\n  allowed_clients web spa\n  scopes a\n }\n" +
	" saml_idp urn:idp {\n  cert_file /c.pem\n  subject_attribute uid\n  map_subject external\n" +
	"  allowed_clients web\n  scopes a b\n }\n" +
	" user alice {\n  password_hash $2a$14$x\n  claim email a@test\n  claim name Alice\n }\n" +
	"}"

// everyOptionJSON is what everyOption adapts to.
const everyOptionJSON = `{"issuer":"https://as.test","storage_path":"/tmp/o.db","signing_alg":"EdDSA",` +
	`"access_token_ttl":300000000000,"refresh_token_ttl":172800000000000,"refresh_token_idle_ttl":86400000000000,` +
	`"refresh_grace_period":30000000000,"session_ttl":3600000000000,"templates_dir":"/t","logo":"/l.png",` +
	`"scope_descriptions":{"invoices:read":"Read your invoices","openid":"Sign you in"},` +
	`"login_max_failures":7,"behind_tls_proxy":true,"sweep_interval":120000000000,"key_rotation":2592000000000000,` +
	`"key_encryption_key":"{env.KEK}","seal_plain_keys":true,"dpop_nonce":true,"dpop_signing_algs":["ES256","EdDSA","PS256"],"device_code_ttl":900000000000,"device_poll_interval":2000000000,"clients":[` +
	`{"client_id":"web","client_name":"Billing portal","logo_uri":"https://w.test/logo.png","client_uri":"https://w.test/","policy_uri":"https://w.test/privacy","auth_method":"client_secret_post","grant_types":["authorization_code","refresh_token","client_credentials"],` +
	`"scopes":["a","b"],"audience":["https://api.test"],"redirect_uris":["https://w.test/cb","https://w.test/cb2"],` +
	`"post_logout_redirect_uris":["https://w.test/bye","https://w.test/bye2"],"trusted":true,"pkce_optional":true,"access_token_format":"opaque","id_token_signed_response_alg":"ES256","dpop_bound_access_tokens":true,` +
	`"secret":"s3cret","exchange":{"audiences":["urn:a","urn:b"],"resources":["https://r.test/"]}},` +
	`{"client_id":"spa","resource_server":true,"secret_hash":"sha256:abababababababababababababababababababababababababababababababab","jwks_file":"/k.json","public":true},` +
	`{"client_id":"jwt","auth_method":"private_key_jwt","jwks":{"keys":[]}},` +
	`{"client_id":"uri","jwks_uri":"https://k.test/jwks"}],` +
	`"trust_issuers":[{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","subject_claim":"email",` +
	`"map_subject":"local_users","allowed_clients":["web","spa"],"scopes":["a"]}],` +
	`"saml_idps":[{"entity_id":"urn:idp","cert_file":"/c.pem","allowed_clients":["web"],"subject_attribute":"uid",` +
	`"map_subject":"external","scopes":["a","b"]}],` +
	`"users":[{"name":"alice","password_hash":"$2a$14$x","claims":{"email":"a@test","name":"Alice"}}]}`

// TestGlobalOptionAdapts: every option of the oauth global option lands
// in its JSON field.
func TestGlobalOptionAdapts(t *testing.T) {
	app, err := parseOAuth(t, everyOption)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(app)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != everyOptionJSON {
		t.Fatalf("adapted to\n%s\nwant\n%s", got, everyOptionJSON)
	}
}

// TestGlobalOptionErrors: each mistake is refused, word for word, with the
// line and a message that says what to fix.
func TestGlobalOptionErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"oauth extra {\n}", "wrong argument count or unexpected line ending after 'extra', at Caddyfile:1"},
		{"oauth {\n isuer https://as.test\n}", `unknown oauth option "isuer", at Caddyfile:2`},
		{"oauth {\n issuer\n}", "wrong argument count or unexpected line ending after 'issuer', at Caddyfile:2"},
		{"oauth {\n issuer a b\n}", "wrong argument count or unexpected line ending after 'b', at Caddyfile:2"},
		{"oauth {\n access_token_ttl soon\n}", `invalid duration "soon": time: invalid duration "soon", at Caddyfile:2`},
		{"oauth {\n sweep_interval 0s\n}", "sweep_interval must be positive, at Caddyfile:2"},
		{"oauth {\n login_max_failures 0\n}", `login_max_failures must be a positive integer, not "0", at Caddyfile:2`},
		{"oauth {\n login_max_failures many\n}", `login_max_failures must be a positive integer, not "many", at Caddyfile:2`},
		{"oauth {\n behind_tls_proxy yes\n}", "wrong argument count or unexpected line ending after 'yes', at Caddyfile:2"},
		{"oauth {\n seal_plain_keys yes\n}", "wrong argument count or unexpected line ending after 'yes', at Caddyfile:2"},
		{"oauth {\n dpop_nonce on\n}", "wrong argument count or unexpected line ending after 'on', at Caddyfile:2"},
		{"oauth {\n dpop_signing_algs\n}", "wrong argument count or unexpected line ending after 'dpop_signing_algs', at Caddyfile:2"},
		{"oauth {\n client svc {\n  dpop_bound_access_tokens yes\n }\n}", "wrong argument count or unexpected line ending after 'yes', at Caddyfile:3"},
		{"oauth {\n scope_description invoices:read\n}", `scope_description needs a scope and its text: scope_description invoices:read "Read your invoices", at Caddyfile:2`},
		{"oauth {\n scope_description a b c\n}", `scope_description needs a scope and its text: scope_description invoices:read "Read your invoices", at Caddyfile:2`},
		{"oauth {\n client svc {\n  name\n }\n}", "wrong argument count or unexpected line ending after 'name', at Caddyfile:3"},
		{"oauth {\n client\n}", "client needs an id: client <id> { ... }, at Caddyfile:2"},
		{"oauth {\n client a b\n}", "wrong argument count or unexpected line ending after 'b', at Caddyfile:2"},
		{"oauth {\n client svc {\n  scope a\n }\n}", `unknown option "scope" in client "svc", at Caddyfile:3`},
		{"oauth {\n client svc {\n  scopes\n }\n}", "wrong argument count or unexpected line ending after 'scopes', at Caddyfile:3"},
		{"oauth {\n client svc {\n  public yes\n }\n}", "wrong argument count or unexpected line ending after 'yes', at Caddyfile:3"},
		{"oauth {\n client svc {\n  jwks nope\n }\n}", `jwks of client "svc" is not valid JSON (quote the JSON with backticks), at Caddyfile:3`},
		{"oauth {\n client svc {\n  exchange x\n }\n}", "wrong argument count or unexpected line ending after 'x', at Caddyfile:3"},
		{"oauth {\n client svc {\n  exchange {\n   audiences a\n  }\n }\n}", `unknown option "audiences" in exchange of client "svc", at Caddyfile:4`},
		{"oauth {\n trust_issuer\n}", "trust_issuer needs the issuer: trust_issuer <iss> { ... }, at Caddyfile:2"},
		{"oauth {\n trust_issuer https://i {\n  jwks_url x\n }\n}", `unknown option "jwks_url" in trust_issuer "https://i", at Caddyfile:3`},
		{"oauth {\n trust_issuer https://i {\n  jwks [\n }\n}", `jwks of trust_issuer "https://i" is not valid JSON (quote the JSON with backticks), at Caddyfile:3`},
		{"oauth {\n saml_idp\n}", "saml_idp needs the entity ID: saml_idp <entityID> { ... }, at Caddyfile:2"},
		{"oauth {\n saml_idp urn:x {\n  cert x\n }\n}", `unknown option "cert" in saml_idp "urn:x", at Caddyfile:3`},
		{"oauth {\n user\n}", "user needs a name: user <name> { password_hash <bcrypt> }, at Caddyfile:2"},
		{"oauth {\n user alice {\n  password x\n }\n}", `unknown option "password" in user "alice", at Caddyfile:3`},
		{"oauth {\n user alice {\n  claim email\n }\n}", "claim needs a name and a value: claim email alice@example.com, at Caddyfile:3"},
		{"oauth {\n user alice {\n  claim a b c\n }\n}", "claim needs a name and a value: claim email alice@example.com, at Caddyfile:3"},
	} {
		_, err := parseOAuth(t, tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.want)
		}
	}
}

// syntaxComment reads the syntax comment on parseGlobalOption: for each
// block (by its path, "" for the oauth block itself, then "client",
// "client exchange"...), the lines it lists, by option name (aliases
// split at |), and whether the line opens a block after an argument.
func syntaxComment(t *testing.T) (options map[string]map[string]string, named map[string]bool) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "caddyfile.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var doc string
	for _, decl := range f.Decls {
		if fn, ok := decl.(*ast.FuncDecl); ok && fn.Name.Name == "parseGlobalOption" && fn.Doc != nil {
			doc = fn.Doc.Text()
		}
	}
	options, named = map[string]map[string]string{}, map[string]bool{}
	var path []string // the blocks the line is in, below oauth
	inside := false
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(line, "\t") {
			continue
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
			continue
		case fields[0] == "oauth" && !inside:
			inside = true
			options[""] = map[string]string{}
			continue
		case fields[0] == "}":
			if len(path) > 0 {
				path = path[:len(path)-1]
			}
			continue
		}
		if !inside {
			t.Fatalf("syntax comment line %q is outside the oauth block", line)
		}
		names := strings.Split(fields[0], "|")
		where := strings.Join(path, " ")
		for _, n := range names {
			if _, dup := options[where][n]; dup {
				t.Errorf("syntax comment lists %q twice in block %q", n, where)
			}
			options[where][n] = line
		}
		if fields[len(fields)-1] == "{" {
			path = append(path, names[0])
			inner := strings.Join(path, " ")
			options[inner] = map[string]string{}
			named[inner] = len(fields) == 3
		}
	}
	if len(options) < 2 {
		t.Fatalf("found no syntax comment on parseGlobalOption:\n%s", doc)
	}
	return options, named
}

// TestSyntaxCommentListsEveryOption: the syntax comment on
// parseGlobalOption lists exactly the options the parser takes, in the
// block that takes them.
func TestSyntaxCommentListsEveryOption(t *testing.T) {
	options, named := syntaxComment(t)
	tables := map[string][]string{
		"":                   slices.Sorted(maps.Keys(appOptions)),
		"client":             slices.Sorted(maps.Keys(clientOptions)),
		"client exchange":    slices.Sorted(maps.Keys(exchangeOptions)),
		"trust_issuer":       slices.Sorted(maps.Keys(trustIssuerOptions)),
		"saml_idp":           slices.Sorted(maps.Keys(samlIdPOptions)),
		"user":               slices.Sorted(maps.Keys(userOptions)),
		"registration":       slices.Sorted(maps.Keys(registrationOptions)),
		"client_id_metadata": slices.Sorted(maps.Keys(clientIDMetadataOptions)),
		// cfargs.CertHeaderArg, shared with oauth_protect.
		"client_cert_header": {"trusted_proxies"},
	}
	if got, want := slices.Sorted(maps.Keys(options)), slices.Sorted(maps.Keys(tables)); !slices.Equal(got, want) {
		t.Fatalf("syntax comment has blocks %q, the parser %q", got, want)
	}
	for where, table := range tables {
		for _, name := range table {
			if _, ok := options[where][name]; !ok {
				t.Errorf("block %q: the parser takes %q, the syntax comment does not list it", where, name)
			}
		}
		for name := range options[where] {
			if !slices.Contains(table, name) {
				t.Errorf("block %q: the syntax comment lists %q, the parser has no such option", where, name)
			}
		}
	}

	// Each listed option, given without arguments in its block, reaches
	// its own parser: whatever it says, it is not "unknown option".
	// An option that does not exist is refused, in every block.
	for where, opts := range options {
		open, close := "oauth {\n", "}\n"
		var path []string
		for _, b := range strings.Fields(where) {
			path = append(path, b)
			if named[strings.Join(path, " ")] {
				open += b + " x {\n"
			} else {
				open += b + " {\n"
			}
			close += "}\n"
		}
		for _, name := range append(slices.Sorted(maps.Keys(opts)), "no_such_option") {
			_, err := parseOAuth(t, open+name+"\n"+close)
			unknown := err != nil && strings.Contains(err.Error(), "unknown")
			if unknown != (name == "no_such_option") {
				t.Errorf("block %q, option %q (%q): %v", where, name, opts[name], err)
			}
		}
	}
}

func TestRefreshTokenIdleTTLOption(t *testing.T) {
	app, err := parseOAuth(t, "oauth {\n issuer https://as.test\n refresh_token_idle_ttl 36h\n}")
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(app.RefreshTokenIdleTTL) != 36*time.Hour {
		t.Fatalf("refresh_token_idle_ttl = %v", time.Duration(app.RefreshTokenIdleTTL))
	}
	b, _ := json.Marshal(app)
	if !strings.Contains(string(b), `"refresh_token_idle_ttl":129600000000000`) {
		t.Fatalf("JSON = %s", b)
	}
	if _, err := parseOAuth(t, "oauth {\n refresh_token_idle_ttl soon\n}"); err == nil {
		t.Fatal("a bad duration was accepted")
	}
}

func TestIDTokenSignedResponseAlgOption(t *testing.T) {
	app, err := parseOAuth(t, "oauth {\n client web {\n secret s\n grant_types authorization_code\n redirect_uri https://w.test/cb\n id_token_signed_response_alg ES256\n }\n}")
	if err != nil {
		t.Fatal(err)
	}
	if len(app.Clients) != 1 || app.Clients[0].IDTokenSignedResponseAlg != "ES256" {
		t.Fatalf("clients = %+v", app.Clients)
	}
	b, _ := json.Marshal(app.Clients[0])
	if !strings.Contains(string(b), `"id_token_signed_response_alg":"ES256"`) {
		t.Fatalf("JSON = %s", b)
	}
	c, err := app.Clients[0].build(caddy.NewReplacer(), nil)
	if err != nil || c.IDTokenSignedResponseAlg != "ES256" {
		t.Fatalf("build: %+v %v", c, err)
	}
	if _, err := parseOAuth(t, "oauth {\n client web {\n id_token_signed_response_alg\n }\n}"); err == nil {
		t.Fatal("missing argument accepted")
	}
}

// TestSealPlainKeysOption: seal_plain_keys is parsed, named the same in
// JSON, takes no argument, and reaches the engine (which refuses it
// without a key encryption key).
func TestSealPlainKeysOption(t *testing.T) {
	app, err := parseOAuth(t, "oauth {\n issuer https://as.test\n key_encryption_key 0123456789abcdef0123456789abcdef\n seal_plain_keys\n}")
	if err != nil {
		t.Fatal(err)
	}
	if !app.SealPlainKeys {
		t.Fatal("seal_plain_keys not set")
	}
	b, _ := json.Marshal(app)
	if !strings.Contains(string(b), `"seal_plain_keys":true`) {
		t.Fatalf("JSON = %s", b)
	}
	if _, err := parseOAuth(t, "oauth {\n seal_plain_keys yes\n}"); err == nil {
		t.Fatal("seal_plain_keys with an argument was accepted")
	}
	t.Setenv("OAUTH_KEK", "") // restored when the test ends
	os.Unsetenv("OAUTH_KEK")
	if _, err := provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n seal_plain_keys\n}"); err == nil || !strings.Contains(err.Error(), "seal_plain_keys") {
		t.Fatalf("seal_plain_keys without a key encryption key: %v", err)
	}
	if _, err := provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n key_encryption_key 0123456789abcdef0123456789abcdef\n seal_plain_keys\n}"); err != nil {
		t.Fatalf("seal_plain_keys with a key encryption key: %v", err)
	}
}

// adaptCaddyfile adapts a whole Caddyfile as `caddy adapt` would.
func adaptCaddyfile(t *testing.T, src string) ([]byte, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	return out, err
}

// oauth_server with a matcher is refused, saying why and what to write:
// Caddy would wrap the handler in the matcher and discovery would
// silently go to the next handler. Arguments and a block are refused too;
// alone it adapts to one route without a matcher.
func TestServerDirectiveRefusesMatcher(t *testing.T) {
	const global = "{\n\toauth {\n\t\tissuer https://auth.test\n\t}\n}\n"
	for _, tc := range []struct{ site, want string }{
		{"auth.test {\n\toauth_server /oauth/*\n}", "oauth_server takes no matcher (/oauth/*)"},
		{"auth.test {\n\t@api path /oauth/*\n\toauth_server @api\n}", "oauth_server takes no matcher (@api)"},
		{"auth.test {\n\toauth_server * \n}", "oauth_server takes no matcher (*)"},
		{"auth.test {\n\toauth_server extra\n}", "oauth_server takes no arguments (extra); configure it in the oauth global option"},
		{"auth.test {\n\toauth_server {\n\t\tissuer x\n\t}\n}", "oauth_server takes no block"},
	} {
		_, err := adaptCaddyfile(t, global+tc.site)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:") {
			t.Errorf("%q: got %v, want an error with %q and the line", tc.site, err, tc.want)
		}
	}
	_, err := adaptCaddyfile(t, global+"auth.test {\n\toauth_server /oauth/*\n}")
	if err == nil || !strings.Contains(err.Error(), "/.well-known/") || !strings.Contains(err.Error(), "write oauth_server alone") {
		t.Errorf("the matcher error does not say why and what to write: %v", err)
	}
	out, err := adaptCaddyfile(t, global+"auth.test {\n\toauth_server\n}")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `{"handle":[{"handler":"oauth_server"}]}`) {
		t.Fatalf("oauth_server alone adapted to %s", out)
	}
}

// Two oauth global blocks are an error, not last-one-wins.
func TestGlobalOptionTwice(t *testing.T) {
	_, err := adaptCaddyfile(t, "{\n\toauth {\n\t\tissuer https://a.test\n\t}\n\toauth {\n\t\tissuer https://b.test\n\t}\n}\na.test {\n\toauth_server\n}")
	if err == nil || !strings.Contains(err.Error(), "the oauth global option is given twice; merge the two blocks into one") || !strings.Contains(err.Error(), "Caddyfile:5") {
		t.Fatalf("two oauth blocks: %v", err)
	}
	if _, err := adaptCaddyfile(t, "{\n\toauth {\n\t\tissuer https://a.test\n\t}\n}\na.test {\n\toauth_server\n}"); err != nil {
		t.Fatalf("one oauth block: %v", err)
	}
}

// What docs/caddyfile-pitfalls.md says of {$VAR} and {env.VAR}: the
// adapter replaces {$VAR}, so the secret itself lands in the adapted
// JSON (and so in autosave.json and GET /config/); {env.VAR} stays a
// placeholder there and is read when the config loads. An unset {$VAR}
// leaves the option without its argument.
func TestSecretPlaceholdersInAdaptedJSON(t *testing.T) {
	t.Setenv("PITFALL_SECRET", "pitfall-secret-0123456789")
	const site = "\nhttp://localhost:9080 {\n\toauth_server\n}"
	client := func(secret string) string {
		return "{\n\toauth {\n\t\tissuer http://localhost:9080\n\t\tclient svc {\n\t\t\tsecret " + secret +
			"\n\t\t\tgrant_types client_credentials\n\t\t}\n\t}\n}" + site
	}
	out, err := adaptCaddyfile(t, client("{$PITFALL_SECRET}"))
	if err != nil || !strings.Contains(string(out), `"secret":"pitfall-secret-0123456789"`) {
		t.Fatalf("{$VAR}: %v\n%s", err, out)
	}
	out, err = adaptCaddyfile(t, client("{env.PITFALL_SECRET}"))
	if err != nil || !strings.Contains(string(out), `"secret":"{env.PITFALL_SECRET}"`) || strings.Contains(string(out), "pitfall-secret-0123456789") {
		t.Fatalf("{env.VAR}: %v\n%s", err, out)
	}
	_, err = adaptCaddyfile(t, client("{$PITFALL_UNSET}"))
	if err == nil || !strings.Contains(err.Error(), "wrong argument count or unexpected line ending after 'secret'") {
		t.Fatalf("unset {$VAR}: %v", err)
	}
	// {file.PATH} is read when the config loads too (a Docker or systemd
	// secret file; one trailing newline dropped).
	kek := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(kek, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n key_encryption_key {file." + kek + "}\n}"
	if _, err := provisionApp(cfg); err == nil || !strings.Contains(err.Error(), "key_encryption_key {file."+kek+"} is 5 bytes") {
		t.Fatalf("{file.PATH} with 5 bytes: %v", err)
	}
	if err := os.WriteFile(kek, []byte(strings.Repeat("k", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := provisionApp(cfg); err != nil {
		t.Fatalf("{file.PATH} with 32 bytes: %v", err)
	}
}

// TestDPoPOptions: the DPoP options reach the engine, which refuses a
// symmetric proof algorithm.
func TestDPoPOptions(t *testing.T) {
	if _, err := provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n dpop_nonce\n dpop_signing_algs ES256 EdDSA\n}"); err != nil {
		t.Fatalf("dpop options: %v", err)
	}
	if _, err := provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n dpop_signing_algs HS256\n}"); err == nil || !strings.Contains(err.Error(), "HS256") {
		t.Fatalf("dpop_signing_algs HS256: %v", err)
	}
}

// TestRegistrationOption: the registration block in the Caddyfile and
// its refusals, down to the engine's config.
func TestRegistrationOption(t *testing.T) {
	const base = "oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n"
	app, err := parseOAuth(t, base+" registration {\n  initial_access_token {env.REG_TOKEN}\n  rate 5\n  max_body 4096\n  max_clients 50\n  unused_client_ttl 1h\n  scopes openid email\n  audience https://mcp.test\n }\n}")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(app.Registration)
	if want := `{"initial_access_token":"{env.REG_TOKEN}","rate":5,"max_body":4096,"max_clients":50,"unused_client_ttl":3600000000000,"scopes":["openid","email"],"audience":["https://mcp.test"]}`; string(got) != want {
		t.Fatalf("registration JSON\n got %s\nwant %s", got, want)
	}
	t.Setenv("REG_TOKEN", "0123456789abcdef0123")
	rc, err := app.Registration.build(caddy.NewReplacer())
	if err != nil || rc.InitialAccessToken != "0123456789abcdef0123" || rc.Rate != 5 || rc.UnusedClientTTL != time.Hour {
		t.Fatalf("build: %+v %v", rc, err)
	}
	for _, tc := range []struct{ block, want string }{
		{" registration {\n }\n", "say who may register"},
		{" registration {\n  open\n  initial_access_token abcdefabcdefabcdef\n }\n", "exclude each other"},
		{" registration {\n  initial_access_token {env.NO_SUCH_REG_TOKEN}\n }\n", "is empty after replacing"},
		{" registration {\n  open\n  rate 0\n }\n", "rate must be a positive integer"},
		{" registration {\n  open\n  max_body 2000000\n }\n", "at most 1048576"},
		{" registration on\n", "wrong argument count"},
		{" registration {\n  open\n  scopes\n }\n", "wrong argument count"},
	} {
		_, err := provisionApp(base + tc.block + "}")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want an error with %q, got %v", tc.block, tc.want, err)
		}
	}
	if _, err := provisionApp(base + " registration {\n  open\n }\n}"); err != nil {
		t.Fatalf("open registration: %v", err)
	}
}

// TestClientIDMetadataOption: the client_id_metadata block, bare or
// with options, and its refusals.
func TestClientIDMetadataOption(t *testing.T) {
	const base = "oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n"
	app, err := parseOAuth(t, base+" client_id_metadata {\n  allowed_hosts agents.example.com\n  cache_min 2m\n  cache_max 1h\n  max_size 4096\n  scopes openid\n  audience https://mcp.test\n }\n}")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(app.ClientIDMetadata)
	if want := `{"allowed_hosts":["agents.example.com"],"cache_min":120000000000,"cache_max":3600000000000,"max_size":4096,"scopes":["openid"],"audience":["https://mcp.test"]}`; string(got) != want {
		t.Fatalf("client_id_metadata JSON\n got %s\nwant %s", got, want)
	}
	if _, err := provisionApp(base + " client_id_metadata\n}"); err != nil {
		t.Fatalf("bare client_id_metadata: %v", err)
	}
	for _, tc := range []struct{ block, want string }{
		{" client_id_metadata on\n", "wrong argument count"},
		{" client_id_metadata {\n  max_size 100000\n }\n", "at most 65536"},
		{" client_id_metadata {\n  cache_min 1h\n  cache_max 1m\n }\n", "cache_max must not be shorter"},
		{" client_id_metadata {\n  allowed_hosts https://x.test\n }\n", "without scheme"},
	} {
		if _, err := provisionApp(base + tc.block + "}"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want an error with %q, got %v", tc.block, tc.want, err)
		}
	}
}

// TestDeviceOptions: the device grant's options reach the engine, which
// refuses them out of bounds with the option's name.
func TestDeviceOptions(t *testing.T) {
	if _, err := provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n device_code_ttl 15m\n device_poll_interval 2s\n}"); err != nil {
		t.Fatalf("device options: %v", err)
	}
	for opt, want := range map[string]string{"device_code_ttl 2h": "device_code_ttl", "device_poll_interval 500ms": "device_poll_interval"} {
		if _, err := provisionApp("oauth {\n issuer https://as.test\n storage_path /nonexistent/oauth.db\n " + opt + "\n}"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", opt, err)
		}
	}
}

// The admin API takes dpop_bound_access_tokens (its body is decoded
// strictly, so an unknown member would be refused).
func TestAdminClientDPoPBound(t *testing.T) {
	var in adminClient
	r := httptest.NewRequest(http.MethodPost, "/oauth/clients", strings.NewReader(`{"client_id":"svc","grant_types":["client_credentials"],"dpop_bound_access_tokens":true}`))
	if err := decodeAdmin(httptest.NewRecorder(), r, &in); err != nil || !in.DPoPBoundAccessTokens {
		t.Fatalf("decodeAdmin: %+v %v", in, err)
	}
}
