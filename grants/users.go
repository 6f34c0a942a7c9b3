package grants

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/bcrypt"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// User is someone who signs in at the login page.
type User struct {
	// Name is the login name.
	Name string `json:"name"`
	// Sub is the token subject (sub), assigned when the user is created
	// and never reassigned (see Subject). Empty in records written before
	// subjects were stored, and in config users until the engine starts.
	Sub string `json:"sub,omitempty"`
	// PasswordHash is a bcrypt hash, as `caddy hash-password` makes.
	PasswordHash string `json:"password_hash"`
	// Claims are OIDC claims released per scope (email, name, ...).
	Claims map[string]string `json:"claims,omitempty"`
	// FromConfig marks users defined in the Caddyfile/JSON config; they
	// cannot be changed at run time.
	FromConfig bool `json:"-"`
}

// DefaultPasswordCost is the bcrypt cost of `caddy hash-password` and
// `caddy oauth user add`, and so of the users' hashes when the config
// has none.
const DefaultPasswordCost = 14

// dummyHashFor returns a hash at cost that no password matches in
// practice. An unknown user is checked against it so that an unknown name
// costs what a wrong password costs (no user enumeration). It is made once per
// cost per process (a config reload reuses it): at cost 14 it takes a
// second.
var dummyHashFor = func() func(cost int) []byte {
	var mu sync.Mutex
	made := map[int][]byte{}
	return func(cost int) []byte {
		mu.Lock()
		defer mu.Unlock()
		if h, ok := made[cost]; ok {
			return h
		}
		h, _ := bcrypt.GenerateFromPassword([]byte("caddy-oauthgate: no such user"), cost)
		made[cost] = h
		return h
	}
}()

// Subject is the user's token subject: the stored one, or for a user
// stored before subjects were, the subject of the name's first use.
func (u *User) Subject() string {
	if u.Sub != "" {
		return u.Sub
	}
	return nameSubject(u.Name)
}

// maxNameSubjectBytes bounds the first-use subject of a name, leaving
// room for the suffix of a re-created name within the 255 ASCII
// characters a sub may have (OIDC Core §2).
const maxNameSubjectBytes = 240

// forbiddenNameChars may not occur in user names or client ids. Besides
// quotes and backslashes (which break headers and logs), '/', '?', '#'
// and '%' would change the meaning of a name put into a URL path, and
// their absence keeps the subject namespace injective: '%' makes the
// percent encoding of names reversible, '/' separates a re-created name's
// suffix, '#' marks external subjects (ext#…).
const forbiddenNameChars = "\"\\/?#%"

// checkName checks a user name or client id: non-empty, no surrounding
// spaces, no forbidden or control characters, valid UTF-8 without the
// replacement character U+FFFD, which is what a JSON decoder makes of
// invalid UTF-8 (the admin API would otherwise store "\xff" as "\ufffd").
func checkName(s string) bool {
	if s == "" || strings.TrimSpace(s) != s || !utf8.ValidString(s) || strings.ContainsAny(s, forbiddenNameChars) ||
		strings.ContainsRune(s, utf8.RuneError) {
		return false
	}
	return !strings.ContainsFunc(s, unicode.IsControl)
}

// ValidateUser checks a user definition and says what to fix.
func ValidateUser(u *User) error {
	if !checkName(u.Name) || len(u.Name) > 200 || len(nameSubject(u.Name)) > maxNameSubjectBytes {
		return fmt.Errorf("user name %q must be non-empty, at most 200 bytes (and at most 240 once its non-ASCII bytes are percent-encoded for the token subject), without surrounding spaces, control characters or any of %s", u.Name, forbiddenNameChars)
	}
	cost, err := bcrypt.Cost([]byte(u.PasswordHash))
	if err != nil {
		return fmt.Errorf("user %q: password_hash must be a bcrypt hash (make one with `caddy hash-password`)", u.Name)
	}
	// Every sign-in is checked at the highest cost of any user (users.go,
	// so that users cannot be told apart by timing): one costlier hash
	// would slow every sign-in down, at cost 31 for days.
	if cost > MaxBcryptCost {
		return fmt.Errorf("user %q: the bcrypt cost of password_hash is %d; at most %d is accepted (every sign-in is checked at the highest cost of any user); hash the password again with `caddy hash-password`", u.Name, cost, MaxBcryptCost)
	}
	return nil
}

// MaxBcryptCost is the costliest password hash accepted: at 16 one check
// takes seconds on a server CPU, and each step doubles it.
const MaxBcryptCost = 16

// ErrUserExists is returned when a user is added twice.
var ErrUserExists = errors.New("user already exists")

// ErrUserNotFound is returned for an unknown user.
var ErrUserNotFound = errors.New("user not found")

// ErrConfigUser is returned when a config-defined user would be changed.
var ErrConfigUser = errors.New("user is defined in the Caddy config; change it there")

// Users finds users: those from the config first, then those stored.
type Users struct {
	config map[string]*User
	store  storage.Store
	// reserved reports names users may not take: client ids, because
	// users and clients share the sub namespace of tokens.
	reserved func(name string) bool
	// costMu guards cost and dummy, which a stored user with a costlier
	// hash raises at run time.
	costMu sync.Mutex
	// cost is the one bcrypt cost every user is checked at, so that
	// timing tells no name from another: the highest of the users' (config
	// and stored); cheaper hashes also pay the dummy check, and stored
	// users are rehashed to it on sign-in. Zero (tools on a storage file)
	// leaves hashes as they are.
	cost int
	// dummy returns the hash at cost that unknown users are checked
	// against. It is made in the background (at cost 14 it takes a
	// second, many under the race detector, which must not hold up a
	// config load); the first unknown name waits for it if need be.
	dummy func() []byte
}

// costs returns the check cost and the dummy hash's maker.
func (us *Users) costs() (int, func() []byte) {
	us.costMu.Lock()
	defer us.costMu.Unlock()
	return us.cost, us.dummy
}

// setCostLocked makes cost the check cost and starts making its dummy.
func (us *Users) setCostLocked(cost int) {
	gen, ready := dummyHashFor, make(chan struct{})
	var h []byte
	go func() { h = gen(cost); close(ready) }()
	us.cost, us.dummy = cost, func() []byte { <-ready; return h }
}

// raiseCost makes the check cost that of hash when it is higher, so that
// a stored user hashed at a higher cost than everyone else (a CLI user
// next to cheaper config users) is not told apart from unknown names.
func (us *Users) raiseCost(hash string) {
	c, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		return
	}
	us.costMu.Lock()
	defer us.costMu.Unlock()
	if us.cost > 0 && c > us.cost {
		us.setCostLocked(c)
	}
}

// raiseCostToStored applies raiseCost to every stored user, at start.
func (us *Users) raiseCostToStored(ctx context.Context) error {
	return us.store.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach(storage.KindUsers, func(_ string, rec storage.Record) error {
			var u User
			if json.Unmarshal(rec.Value, &u) == nil {
				us.raiseCost(u.PasswordHash)
			}
			return nil
		})
	})
}

// setCost picks the cost every password check runs at: the configured
// users' (the highest, when they differ; the others are returned, to be
// warned about), else DefaultPasswordCost; and starts making the dummy hash now,
// so that the first unknown name does not pay for it.
func (us *Users) setCost() (differing []string) {
	cost := 0
	for _, u := range us.config {
		if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil && c > cost {
			cost = c
		}
	}
	if cost == 0 {
		cost = DefaultPasswordCost
	}
	for _, u := range us.config {
		if c, _ := bcrypt.Cost([]byte(u.PasswordHash)); c != cost {
			differing = append(differing, u.Name)
		}
	}
	sort.Strings(differing)
	us.costMu.Lock()
	us.setCostLocked(cost)
	us.costMu.Unlock()
	return differing
}

// LookupSubject returns the local user whose token subject is sub, or
// ErrUserNotFound. An external subject is never a local user, and the
// subject of a removed user is not the subject of a new user of the
// same name.
func (us *Users) LookupSubject(ctx context.Context, sub string) (*User, error) {
	return lookupBySubject(sub, func(name string) (*User, error) { return us.Lookup(ctx, name) })
}

// lookupSubjectTx is LookupSubject inside a transaction.
func (us *Users) lookupSubjectTx(tx storage.Tx, sub string) (*User, error) {
	return lookupBySubject(sub, func(name string) (*User, error) { return us.lookupTx(tx, name) })
}

func lookupBySubject(sub string, lookup func(name string) (*User, error)) (*User, error) {
	if IsExternalSubject(sub) {
		return nil, ErrUserNotFound
	}
	for _, name := range subjectNames(sub) {
		u, err := lookup(name)
		if err == nil && u.Subject() == sub {
			return u, nil
		}
		if err != nil && !errors.Is(err, ErrUserNotFound) {
			return nil, err
		}
	}
	return nil, ErrUserNotFound
}

// Lookup returns the user by name, or ErrUserNotFound. Code that starts
// from a token's sub uses LookupSubject.
func (us *Users) Lookup(ctx context.Context, name string) (*User, error) {
	if u, ok := us.config[name]; ok {
		return u, nil
	}
	if us.store == nil {
		return nil, ErrUserNotFound
	}
	var u *User
	err := us.store.View(ctx, func(tx storage.Tx) error {
		var err error
		u, err = us.lookupTx(tx, name)
		return err
	})
	return u, err
}

// lookupTx is Lookup inside a transaction.
func (us *Users) lookupTx(tx storage.Tx, name string) (*User, error) {
	if u, ok := us.config[name]; ok {
		return u, nil
	}
	return us.lookupStoredTx(tx, name)
}

// lookupStoredTx finds a run-time user only.
func (us *Users) lookupStoredTx(tx storage.Tx, name string) (*User, error) {
	rec, err := tx.Get(storage.KindUsers, name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrUserNotFound
	}
	if err != nil {
		return nil, err
	}
	u := new(User)
	return u, json.Unmarshal(rec.Value, u)
}

// Authenticate checks a password with bcrypt. Unknown users cost the same
// as wrong passwords and fail the same way.
func (us *Users) Authenticate(ctx context.Context, name, password string) (*User, error) {
	u, err := us.Lookup(ctx, name)
	if err != nil && !errors.Is(err, ErrUserNotFound) {
		return nil, err
	}
	if u == nil {
		_ = compareHash(us.dummyHash(), []byte(password))
		return nil, ErrUserNotFound
	}
	hash := []byte(u.PasswordHash)
	// A hash cheaper than the engine's (a run-time user added with a lower
	// cost, until a sign-in rehashes it) would answer faster than an
	// unknown name: pay for the dummy check as well.
	if c, err := bcrypt.Cost(hash); err == nil {
		if cost, _ := us.costs(); cost > 0 && c < cost {
			_ = compareHash(us.dummyHash(), []byte(password))
		}
	}
	if compareHash(hash, []byte(password)) != nil {
		return nil, ErrUserNotFound
	}
	us.rehash(ctx, u, password)
	return u, nil
}

// dummyHash is the hash unknown users are checked against.
func (us *Users) dummyHash() []byte {
	if _, dummy := us.costs(); dummy != nil {
		return dummy()
	}
	return dummyHashFor(DefaultPasswordCost)
}

// compareHash is bcrypt.CompareHashAndPassword; a test watches it.
var compareHash = bcrypt.CompareHashAndPassword

// rehash stores a run-time user's password again at the check cost when it was
// hashed at another, so that its sign-in takes as long as everyone's
// (an unknown name's included). It is best effort: a failure leaves the
// old hash, which still works.
func (us *Users) rehash(ctx context.Context, u *User, password string) {
	cost, _ := us.costs()
	if cost == 0 || u.FromConfig || us.store == nil {
		return
	}
	if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil || c == cost {
		return
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return
	}
	_ = us.store.Update(ctx, func(tx storage.Tx) error {
		var cur User
		if _, err := getJSON(tx, storage.KindUsers, u.Name, &cur); err != nil || cur.PasswordHash != u.PasswordHash {
			return err // gone or changed meanwhile: leave it
		}
		cur.PasswordHash = string(h)
		return putJSON(tx, storage.KindUsers, u.Name, &cur, time.Time{})
	})
}

// Put stores a run-time user. create refuses to replace an existing one;
// otherwise the user must exist, and what u does not give is kept (see
// Update).
func (us *Users) Put(ctx context.Context, u *User, create bool) error {
	if !create {
		_, err := us.Update(ctx, u)
		return err
	}
	if err := us.checkRuntime(u); err != nil {
		return err
	}
	err := us.store.Update(ctx, func(tx storage.Tx) error {
		_, err := tx.Get(storage.KindUsers, u.Name)
		switch {
		case err == nil:
			return ErrUserExists
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}
		// The subject is assigned once, here, and kept by every later
		// change (Update).
		if u.Sub, err = assignSubject(tx, u.Name, false); err != nil {
			return err
		}
		b, err := json.Marshal(u)
		if err != nil {
			return err
		}
		return tx.Put(storage.KindUsers, u.Name, storage.Record{Value: b})
	})
	if err == nil {
		us.raiseCost(u.PasswordHash)
	}
	return err
}

// checkRuntime checks a user that is to be stored at run time.
func (us *Users) checkRuntime(u *User) error {
	if err := ValidateUser(u); err != nil {
		return err
	}
	if _, ok := us.config[u.Name]; ok {
		return ErrConfigUser
	}
	if us.reserved != nil && us.reserved(u.Name) {
		return fmt.Errorf("user name %q is a client id; users and clients must have different names", u.Name)
	}
	return nil
}

// Update changes an existing run-time user and keeps what u does not
// give: an empty PasswordHash keeps the password, nil Claims keep the
// claims (an empty, non-nil map clears them). It reports whether the
// password changed, after which the caller must end the user's grants
// and sessions (Engine.UpdateUser does). It sets u.Sub to the subject.
func (us *Users) Update(ctx context.Context, u *User) (passwordChanged bool, err error) {
	ch, err := us.update(ctx, u)
	return ch.password, err
}

// userChange is what an update changed: whether the password did, and
// the names of the claims that were added, removed or given another value.
type userChange struct {
	password bool
	claims   []string
}

// fields names the changed parts of the user (the password, never its
// hash; the claims by name, never by value).
func (c userChange) fields() []string {
	var f []string
	if c.password {
		f = append(f, "password")
	}
	if len(c.claims) > 0 {
		f = append(f, "claims")
	}
	return f
}

// update is Update, telling what changed.
func (us *Users) update(ctx context.Context, u *User) (ch userChange, err error) {
	if _, ok := us.config[u.Name]; ok {
		return ch, ErrConfigUser
	}
	err = us.store.Update(ctx, func(tx storage.Tx) error {
		ch = userChange{}
		rec, err := tx.Get(storage.KindUsers, u.Name)
		if errors.Is(err, storage.ErrNotFound) {
			return ErrUserNotFound
		}
		if err != nil {
			return err
		}
		var old User
		if err := json.Unmarshal(rec.Value, &old); err != nil {
			return err
		}
		// The subject is assigned once, at creation, and kept by every
		// later change.
		next := User{Name: u.Name, Sub: old.Subject(), PasswordHash: cmp.Or(u.PasswordHash, old.PasswordHash), Claims: u.Claims}
		if next.Claims == nil {
			next.Claims = old.Claims
		}
		if err := us.checkRuntime(&next); err != nil {
			return err
		}
		b, err := json.Marshal(&next)
		if err != nil {
			return err
		}
		ch = userChange{password: next.PasswordHash != old.PasswordHash, claims: changedClaims(old.Claims, next.Claims)}
		u.Sub = next.Sub
		return tx.Put(storage.KindUsers, u.Name, storage.Record{Value: b})
	})
	if err == nil {
		us.raiseCost(u.PasswordHash)
	}
	return ch, err
}

// Remove deletes a run-time user and returns its subject, whose grants
// the caller ends (Engine.RemoveUser does).
func (us *Users) Remove(ctx context.Context, name string) (sub string, err error) {
	if _, ok := us.config[name]; ok {
		return "", ErrConfigUser
	}
	err = us.store.Update(ctx, func(tx storage.Tx) error {
		var err error
		sub, err = us.removeTx(tx, name)
		return err
	})
	return sub, err
}

// removeTx deletes a stored user in tx and returns its subject.
func (us *Users) removeTx(tx storage.Tx, name string) (string, error) {
	u, err := us.lookupStoredTx(tx, name)
	if err != nil {
		return "", err
	}
	sub := u.Subject()
	// A user stored before names were recorded is recorded now, so that a
	// new user of this name gets another subject.
	if err := recordNameUse(tx, name, nameUse{Sub: sub}); err != nil {
		return "", err
	}
	return sub, tx.Delete(storage.KindUsers, name)
}

// List returns every user, config users first, without password hashes.
func (us *Users) List(ctx context.Context) ([]User, error) {
	var out []User
	for _, u := range us.config {
		out = append(out, User{Name: u.Name, Sub: u.Subject(), Claims: u.Claims, FromConfig: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if us.store == nil {
		return out, nil
	}
	err := us.store.View(ctx, func(tx storage.Tx) error {
		return tx.ForEach(storage.KindUsers, func(name string, rec storage.Record) error {
			var u User
			if err := json.Unmarshal(rec.Value, &u); err != nil {
				return err
			}
			out = append(out, User{Name: u.Name, Sub: u.Subject(), Claims: u.Claims})
			return nil
		})
	})
	return out, err
}

// StoredUsers manages only the users in st, for tools that open the
// storage file while the server is stopped.
func StoredUsers(st storage.Store) *Users {
	return &Users{config: map[string]*User{}, store: st}
}

// ListUsers lists the configured and the stored users.
func (e *Engine) ListUsers(ctx context.Context) ([]User, error) { return e.users.List(ctx) }

// AddUser stores a new user (ErrUserExists when the name is taken).
func (e *Engine) AddUser(ctx context.Context, u *User) error {
	if err := e.users.Put(ctx, u, true); err != nil {
		return err
	}
	fields, claims := userFields(u)
	e.observer.AdminChange(changeUser, actionCreated)
	e.auditLine(ctx, zapcore.InfoLevel, auditUserCreated, zap.String("user", u.Name), zap.String("subject", u.Sub),
		zap.Strings("fields", fields), zap.Strings("claims", claims))
	return nil
}

// LookupUser finds a user by name (ErrUserNotFound when there is none).
func (e *Engine) LookupUser(ctx context.Context, name string) (*User, error) {
	return e.users.Lookup(ctx, name)
}
