package grants

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// countingObserver records the security events an engine reports.
type countingObserver struct {
	nopObserver
	mu     sync.Mutex
	counts map[string]int
}

func (o *countingObserver) add(k string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.counts == nil {
		o.counts = map[string]int{}
	}
	o.counts[k]++
}

func (o *countingObserver) SignIn(result string)            { o.add("signin:" + result) }
func (o *countingObserver) RefreshReuse()                   { o.add("reuse") }
func (o *countingObserver) AdminChange(kind, action string) { o.add(kind + ":" + action) }

func (o *countingObserver) count(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[k]
}

func (o *countingObserver) snapshot() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.counts)
}

var _ Observer = (*countingObserver)(nil)

// auditFixture is the password-grant engine with its log captured at
// debug level and its events counted.
type auditFixture struct {
	e    *Engine
	logs *observer.ObservedLogs
	obs  *countingObserver
}

func newAuditFixture(t *testing.T, mod func(*Config)) *auditFixture {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	obs := &countingObserver{}
	e := newEngine(t, withROPC(), withConfig(func(c *Config) {
		c.Logger = zap.New(core).Named("oauth")
		c.Observer = obs
		if mod != nil {
			mod(c)
		}
	}))
	return &auditFixture{e: e, logs: logs, obs: obs}
}

// lines are the audit lines with this message.
func (f *auditFixture) lines(msg string) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, en := range f.logs.All() {
		if en.LoggerName == "oauth.audit" && en.Message == msg {
			out = append(out, en)
		}
	}
	return out
}

// one is the only audit line with this message, at level, whose fields
// include want (other fields, such as a time, are allowed).
func (f *auditFixture) one(t *testing.T, msg string, level zapcore.Level, want map[string]any) map[string]any {
	t.Helper()
	got := f.lines(msg)
	if len(got) != 1 {
		t.Fatalf("%d audit lines %q, want 1; the log:\n%s", len(got), msg, dumpLogs(f.logs))
	}
	if got[0].Level != level {
		t.Errorf("%q logged at %v, want %v", msg, got[0].Level, level)
	}
	fields := got[0].ContextMap()
	for k, v := range want {
		if fmt.Sprint(fields[k]) != fmt.Sprint(v) {
			t.Errorf("%q: field %s = %v, want %v (fields %v)", msg, k, fields[k], v, fields)
		}
	}
	return fields
}

// noSecrets fails when any log line (message or field value, audit or
// not) contains one of the secrets.
func (f *auditFixture) noSecrets(t *testing.T, secrets ...string) {
	t.Helper()
	for _, en := range f.logs.All() {
		text := en.Message
		for k, v := range en.ContextMap() {
			text += " " + k + "=" + fmt.Sprint(v)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("log line %q contains a secret (%.6s…): %s", en.Message, s, text)
			}
		}
	}
}

func dumpLogs(logs *observer.ObservedLogs) string {
	var b strings.Builder
	for _, en := range logs.All() {
		fmt.Fprintf(&b, "  %s %s %q %v\n", en.Level, en.LoggerName, en.Message, en.ContextMap())
	}
	return b.String()
}

// TestAuditSignInFailedPasswordGrant: a wrong password at the password
// grant is an INFO line naming the user, the client address and the
// client, and counted as a failure; a success is counted, not logged.
func TestAuditSignInFailedPasswordGrant(t *testing.T) {
	f := newAuditFixture(t, nil)
	checkError(t, pwRequest(f.e, "192.0.2.31:4711", "username", "alice", "password", "wrong-pw-Zq81"), 400, CodeInvalidGrant)
	f.one(t, auditSignInFailed, zapcore.InfoLevel, map[string]any{
		"user": "alice", "client_ip": "192.0.2.31", "client_id": "c-ropc", "via": "password_grant"})
	m := checkToken(t, pwRequest(f.e, "192.0.2.31:4711", "username", "alice", "password", "alice-pw"))
	if n := len(f.lines(auditSignInFailed)); n != 1 {
		t.Errorf("%d failed sign-in lines after a success, want 1", n)
	}
	if f.obs.count("signin:failure") != 1 || f.obs.count("signin:success") != 1 {
		t.Errorf("counted %v, want one failure and one success", f.obs.snapshot())
	}
	f.noSecrets(t, "wrong-pw-Zq81", "alice-pw", pwSecret, m["access_token"].(string), m["refresh_token"].(string))
}

// TestAuditSignInFailedLoginPage: the login page writes the same line,
// with the client address the server resolved and the client asking.
func TestAuditSignInFailedLoginPage(t *testing.T) {
	f := newAuditFixture(t, nil)
	b := newBrowser(t, f.e)
	b.clientIP, b.tls = "203.0.113.9", true
	page := b.get(f.e.basePath + AuthorizePath + "?" + authzQuery("c-web", newChallenge()).Encode())
	if !isLoginPage(page) {
		t.Fatalf("no login page: %d %s", page.Code, page.Body.String())
	}
	if rec := b.login(page, "alice", "wrong-pw-Lp42"); !isLoginPage(rec) {
		t.Fatalf("a wrong password did not show the form again: %d", rec.Code)
	}
	f.one(t, auditSignInFailed, zapcore.InfoLevel, map[string]any{
		"user": "alice", "client_ip": "203.0.113.9", "client_id": "c-web", "via": "login_page"})
	if f.obs.count("signin:failure") != 1 {
		t.Errorf("counted %v, want one failure", f.obs.snapshot())
	}
	f.noSecrets(t, "wrong-pw-Lp42", "alice-pw", webSecret)
}

// TestAuditLockout: the failure that locks a user name from an address
// is a WARN line (once per lockout); each attempt refused while locked is
// an INFO line and counted as locked, the password left unchecked.
func TestAuditLockout(t *testing.T) {
	f := newAuditFixture(t, func(c *Config) { c.Web.Throttle = ThrottleConfig{MaxFailures: 3} })
	for i := range 3 {
		checkError(t, pwRequest(f.e, "192.0.2.77:1", "username", "alice", "password", fmt.Sprintf("guess-%d-Kx", i)), 400, CodeInvalidGrant)
	}
	fields := f.one(t, auditSignInLocked, zapcore.WarnLevel, map[string]any{
		"user": "alice", "client_ip": "192.0.2.77", "client_id": "c-ropc", "via": "password_grant", "lock": "user_and_address"})
	if until, ok := fields["locked_until"].(time.Time); !ok || !until.After(time.Now()) {
		t.Errorf("locked_until = %v, want a time ahead", fields["locked_until"])
	}
	for range 2 {
		checkError(t, pwRequest(f.e, "192.0.2.77:1", "username", "alice", "password", "alice-pw"), http.StatusTooManyRequests, CodeInvalidGrant)
	}
	if n := len(f.lines(auditSignInLocked)); n != 1 {
		t.Errorf("%d lockout lines, want 1 per lockout", n)
	}
	refused := f.lines(auditSignInRefused)
	if len(refused) != 2 || refused[0].Level != zapcore.InfoLevel || refused[0].ContextMap()["user"] != "alice" ||
		refused[0].ContextMap()["client_ip"] != "192.0.2.77" {
		t.Errorf("refused-while-locked lines: %v", refused)
	}
	if f.obs.count("signin:failure") != 3 || f.obs.count("signin:locked") != 2 || f.obs.count("signin:success") != 0 {
		t.Errorf("counted %v, want 3 failures and 2 locked", f.obs.snapshot())
	}
	f.noSecrets(t, "guess-0-Kx", "guess-1-Kx", "guess-2-Kx", "alice-pw", pwSecret)
}

// TestAuditLockoutUserName: guesses at one name from many addresses lock
// the name; the line says so.
func TestAuditLockoutUserName(t *testing.T) {
	f := newAuditFixture(t, func(c *Config) { c.Web.Throttle = ThrottleConfig{MaxFailures: 5, UserMaxFailures: 3} })
	for i := range 3 {
		pwRequest(f.e, fmt.Sprintf("192.0.2.%d:1", 100+i), "username", "bob", "password", "nope-Wq")
	}
	f.one(t, auditSignInLocked, zapcore.WarnLevel, map[string]any{"user": "bob", "client_ip": "192.0.2.102", "lock": "user"})
}

// TestAuditRefreshReuse: presenting a rotated refresh token again is a
// WARN line with the client, the subject and the grant id, counted once;
// neither refresh token appears in the log.
func TestAuditRefreshReuse(t *testing.T) {
	f := newAuditFixture(t, nil)
	m := checkToken(t, pwRequest(f.e, "192.0.2.5:1", "username", "alice", "password", "alice-pw"))
	rt1 := m["refresh_token"].(string)
	_, claims := segments(t, m["access_token"].(string))
	m2 := checkToken(t, pwRequest(f.e, "192.0.2.5:1", "grant_type", GrantRefreshToken, "refresh_token", rt1))
	if len(f.lines(auditRefreshReuse)) != 0 {
		t.Fatal("a normal rotation was logged as reuse")
	}
	checkError(t, pwRequest(f.e, "192.0.2.5:1", "grant_type", GrantRefreshToken, "refresh_token", rt1), 400, CodeInvalidGrant)
	u, err := f.e.LookupUser(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	f.one(t, auditRefreshReuse, zapcore.WarnLevel, map[string]any{
		"client_id": "c-ropc", "subject": u.Subject(), "grant_id": claims["gid"]})
	if claims["gid"] == nil || claims["gid"] == "" {
		t.Errorf("the access token has no gid to compare with: %v", claims)
	}
	if f.obs.count("reuse") != 1 {
		t.Errorf("counted %v, want one reuse", f.obs.snapshot())
	}
	// The successor is revoked too, and presenting it is no second reuse
	// line: the grant is already gone.
	checkError(t, pwRequest(f.e, "192.0.2.5:1", "grant_type", GrantRefreshToken, "refresh_token", m2["refresh_token"].(string)), 400, CodeInvalidGrant)
	if n := len(f.lines(auditRefreshReuse)); n != 1 {
		t.Errorf("%d reuse lines, want 1", n)
	}
	f.noSecrets(t, rt1, m2["refresh_token"].(string), m["access_token"].(string), m2["access_token"].(string), pwSecret, "alice-pw")
}

// TestAuditUserChanges: creating, changing and removing a run-time user
// are INFO lines that say which fields changed (the claims by name),
// never the password, its hash or a claim's value.
func TestAuditUserChanges(t *testing.T) {
	f := newAuditFixture(t, nil)
	ctx := context.Background()
	hash1, hash2 := testHash("dave-pw-Fm3"), testHash("dave-pw-Gn4")
	dave := &User{Name: "dave", PasswordHash: hash1, Claims: map[string]string{"email": "dave@private.test", "name": "Dave Secretname"}}
	if err := f.e.AddUser(ctx, dave); err != nil {
		t.Fatal(err)
	}
	f.one(t, auditUserCreated, zapcore.InfoLevel, map[string]any{
		"user": "dave", "subject": dave.Subject(), "fields": []string{"password", "claims"}, "claims": []string{"email", "name"}})

	// A token, so that the password change has a grant to revoke.
	checkToken(t, pwRequest(f.e, "192.0.2.6:1", "username", "dave", "password", "dave-pw-Fm3"))
	if err := f.e.UpdateUser(ctx, &User{Name: "dave", PasswordHash: hash2,
		Claims: map[string]string{"email": "dave@new-private.test", "locale": "de"}}); err != nil {
		t.Fatal(err)
	}
	f.one(t, auditUserUpdated, zapcore.InfoLevel, map[string]any{
		"user": "dave", "changed": []string{"password", "claims"}, "claims": []string{"email", "locale", "name"}, "grants_revoked": 1})

	if err := f.e.RemoveUser(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	f.one(t, auditUserRemoved, zapcore.InfoLevel, map[string]any{"user": "dave", "subject": dave.Subject(), "grants_revoked": 0})

	// Refused changes change nothing and log nothing.
	if err := f.e.RemoveUser(ctx, "alice"); err == nil {
		t.Fatal("removed a config user")
	}
	if n := len(f.lines(auditUserRemoved)); n != 1 {
		t.Errorf("%d user removed lines, want 1", n)
	}
	for _, k := range []string{"user:created", "user:updated", "user:removed"} {
		if f.obs.count(k) != 1 {
			t.Errorf("counted %v, want one %s", f.obs.snapshot(), k)
		}
	}
	f.noSecrets(t, hash1, hash2, "dave-pw-Fm3", "dave-pw-Gn4", "dave@private.test", "dave@new-private.test", "Dave Secretname")
}

// TestAuditClientChanges: registering and removing a run-time client are
// INFO lines naming the client and the fields set, never its secret.
func TestAuditClientChanges(t *testing.T) {
	f := newAuditFixture(t, nil)
	ctx := context.Background()
	c := &Client{ClientSpec: ClientSpec{ID: "billing", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"invoices:read"},
		Audience: []string{"https://billing.test"}}}
	secret, err := f.e.AddClient(ctx, c)
	if err != nil || secret == "" {
		t.Fatalf("AddClient: %q, %v", secret, err)
	}
	f.one(t, auditClientCreated, zapcore.InfoLevel, map[string]any{
		"client_id": "billing", "auth_method": AuthSecretBasic, "grant_types": []string{GrantClientCredentials},
		"fields": []string{"audience", "auth_method", "grant_types", "scopes"}})
	form := url.Values{"grant_type": {GrantClientCredentials}}
	tr := postTokenRaw(f.e, form, siBasicAuth("billing", secret))
	if tr.status != http.StatusOK {
		t.Fatalf("the new client gets no token: %d %s", tr.status, tr.raw)
	}
	if err := f.e.RemoveClient(ctx, "billing"); err != nil {
		t.Fatal(err)
	}
	f.one(t, auditClientRemoved, zapcore.InfoLevel, map[string]any{"client_id": "billing", "grants_revoked": 0})
	if len(f.lines(auditGrantsRevoked)) != 0 {
		t.Error("removing a client also wrote a revoke-all line; its own line says what it revoked")
	}
	if f.obs.count("client:created") != 1 || f.obs.count("client:removed") != 1 || f.obs.count("grants:revoked") != 0 {
		t.Errorf("counted %v", f.obs.snapshot())
	}
	f.noSecrets(t, secret, tr.str("access_token"), fmt.Sprintf("%x", HashSecret(secret)))
}

// TestAuditKeys: an operator's rotation is one INFO line per new key and
// one per key scheduled to retire (with when); a key leaving the key set
// is a line too; automatic rotation says it was automatic.
func TestAuditKeys(t *testing.T) {
	f := newAuditFixture(t, nil)
	ctx := context.Background()
	before := krKids(f.e)
	kid, err := f.e.RotateKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rotated := f.lines(auditKeyRotated)
	var algs []string
	for _, en := range rotated {
		m := en.ContextMap()
		if en.Level != zapcore.InfoLevel || m["trigger"] != "admin" || slices.Contains(before, m["kid"].(string)) {
			t.Errorf("rotated line %v %v", en.Level, m)
		}
		algs = append(algs, m["alg"].(string))
		if m["alg"] == DefaultSigningAlg && m["kid"] != kid {
			t.Errorf("rotated line names %v, RotateKeys returned %s", m["kid"], kid)
		}
	}
	slices.Sort(algs)
	if !slices.Equal(algs, []string{"ES256", "RS256"}) {
		t.Errorf("rotated lines for %v, want ES256 and RS256", algs)
	}
	retiring := f.lines(auditKeyRetiring)
	if len(retiring) != 2 {
		t.Fatalf("%d retiring lines, want 2:\n%s", len(retiring), dumpLogs(f.logs))
	}
	for _, en := range retiring {
		m := en.ContextMap()
		r, ok := m["retires"].(time.Time)
		if !ok || !slices.Contains(before, m["kid"].(string)) || !r.After(time.Now()) || m["alg"] == nil {
			t.Errorf("retiring line %v", m)
		}
	}
	if f.obs.count("key:rotated") != 1 {
		t.Errorf("counted %v, want one key rotation", f.obs.snapshot())
	}
	// A rotation an hour ago: the keys it made retired long since, and
	// leave the key set at the next reload.
	if _, err := f.e.rotate(ctx, time.Now().Add(-time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.e.ReloadKeys(ctx); err != nil {
		t.Fatal(err)
	}
	retired := f.lines(auditKeyRetired)
	if len(retired) != 2 || retired[0].Level != zapcore.InfoLevel {
		t.Fatalf("%d retired lines, want 2:\n%s", len(retired), dumpLogs(f.logs))
	}
	var gone []string
	for _, en := range retired {
		gone = append(gone, en.ContextMap()["kid"].(string))
	}
	if !slices.Contains(gone, kid) {
		t.Errorf("retired %v, want %s among them", gone, kid)
	}
	// Automatic rotation.
	g := newAuditFixture(t, func(c *Config) { c.KeyRotation = time.Hour })
	if err := g.e.MaintainKeys(ctx, time.Now().Add(61*time.Minute)); err != nil {
		t.Fatal(err)
	}
	auto := g.lines(auditKeyRotated)
	if len(auto) != 2 || auto[0].ContextMap()["trigger"] != "key_rotation" || g.obs.count("key:rotated") != 0 {
		t.Errorf("automatic rotation: %d lines (%v), counted %v", len(auto), dumpLogs(g.logs), g.obs.snapshot())
	}
}

// TestAuditRevokeAll: an operator's revoke-all of a subject or a client
// is an INFO line with how many grants it ended.
func TestAuditRevokeAll(t *testing.T) {
	f := newAuditFixture(t, nil)
	ctx := context.Background()
	var rts []string
	for range 2 {
		m := checkToken(t, pwRequest(f.e, "192.0.2.8:1", "username", "alice", "password", "alice-pw"))
		rts = append(rts, m["refresh_token"].(string))
	}
	if n, err := f.e.RevokeSubjectOrUser(ctx, "alice"); err != nil || n != 2 {
		t.Fatalf("RevokeSubjectOrUser = %d, %v", n, err)
	}
	f.one(t, auditGrantsRevoked, zapcore.InfoLevel, map[string]any{"subject": "alice", "grants_revoked": 2})
	checkToken(t, pwRequest(f.e, "192.0.2.8:1", "username", "bob", "password", "bob-pw"))
	if n, err := f.e.RevokeClient(ctx, "c-ropc"); err != nil || n != 1 {
		t.Fatalf("RevokeClient = %d, %v", n, err)
	}
	lines := f.lines(auditGrantsRevoked)
	if len(lines) != 2 || lines[1].ContextMap()["client_id"] != "c-ropc" || lines[1].ContextMap()["grants_revoked"] != int64(1) {
		t.Fatalf("revoke-all lines:\n%s", dumpLogs(f.logs))
	}
	if f.obs.count("grants:revoked") != 2 {
		t.Errorf("counted %v", f.obs.snapshot())
	}
	f.noSecrets(t, append(rts, pwSecret, "alice-pw", "bob-pw")...)
}

// TestAuditLinesAreDocumented: every audit message is in docs/audit.md.
func TestAuditLinesAreDocumented(t *testing.T) {
	raw, err := os.ReadFile("../docs/audit.md")
	if err != nil {
		t.Fatal(err)
	}
	b := string(raw)
	for _, msg := range []string{auditDeviceLocked, auditDeviceApproved, auditSignInFailed, auditSignInLocked, auditSignInRefused, auditRefreshReuse, auditUserCreated,
		auditUserUpdated, auditUserRemoved, auditClientCreated, auditClientRemoved, auditKeyRotated, auditKeyRetiring,
		auditKeyRetired, auditGrantsRevoked} {
		if !strings.Contains(b, "`"+msg+"`") {
			t.Errorf("docs/audit.md does not document the audit line %q", msg)
		}
	}
}

// A name longer than any user's is a failed sign-in too: counted, and
// logged with the name cut to 200 bytes.
func TestAuditSignInOversizedName(t *testing.T) {
	f := newAuditFixture(t, nil)
	long := strings.Repeat("é", 150) // 300 bytes
	checkError(t, pwRequest(f.e, "192.0.2.32:4711", "username", long, "password", "whatever-pw-Q1"), 400, CodeInvalidGrant)
	lines := f.lines(auditSignInFailed)
	if len(lines) != 1 || f.obs.count("signin:failure") != 1 {
		t.Fatalf("%d lines, counted %v; want one failed sign-in", len(lines), f.obs.snapshot())
	}
	m := lines[0].ContextMap()
	if u, _ := m["user"].(string); u != strings.Repeat("é", 100) || m["user_truncated"] != true {
		t.Errorf("user = %q (truncated %v), want the first 200 bytes", u, m["user_truncated"])
	}
	f.noSecrets(t, "whatever-pw-Q1")
}
