package grants

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// The identity namespace. Every token subject (sub) is one of:
//
//   - a local user's subject: the user name the first time it is used,
//     with every byte outside printable ASCII percent-encoded (jürgen →
//     j%C3%BCrgen). A name used again after its user was removed gets
//     that form plus "/" and random characters, so a new user never
//     inherits the old one's subject (OIDC Core §2: never reassigned).
//   - a client id (client_credentials: the client acts for itself).
//   - an external subject: ExternalSubjectPrefix followed by the
//     unpadded base64url SHA-256 of the asserting issuer (JWT iss or SAML
//     entity ID), a 0 byte and the asserted subject. Its original issuer
//     and subject travel in the ext_iss and ext_sub claims.
//
// User names and client ids may not contain '/', '?', '#' or '%', so the
// three kinds cannot meet: only external subjects contain '#', only
// re-created names' subjects contain '/', and percent encoding of names
// is reversible. Users and clients may not share a name.

// ExternalSubjectPrefix starts every subject asserted by a trusted JWT
// issuer or SAML identity provider that is not mapped to a local user.
const ExternalSubjectPrefix = "ext#"

// Subject mappings of an external identity provider (map_subject).
const (
	// MapSubjectExternal namespaces the provider's subjects (default).
	MapSubjectExternal = "external"
	// MapSubjectLocalUsers takes the asserted subject as the name of an
	// existing local user; any other subject is refused.
	MapSubjectLocalUsers = "local_users"
)

// checkProviderID checks an external provider's issuer or entity ID: the
// 0 byte separates it from the subject in externalSubject, and control
// characters have no place in an identifier.
func checkProviderID(owner, id string) error {
	if strings.ContainsFunc(id, unicode.IsControl) {
		return fmt.Errorf("%s: the identifier must not contain control characters", owner)
	}
	return nil
}

// validateMapSubject checks a map_subject value and returns it with the
// default filled in.
func validateMapSubject(owner, m string) (string, error) {
	switch m {
	case "", MapSubjectExternal:
		return MapSubjectExternal, nil
	case MapSubjectLocalUsers:
		return m, nil
	}
	return "", fmt.Errorf("%s: map_subject must be %s or %s, not %q", owner, MapSubjectExternal, MapSubjectLocalUsers, m)
}

// IsExternalSubject reports whether sub was asserted by an external
// identity provider and so never names a local user or client.
func IsExternalSubject(sub string) bool { return strings.HasPrefix(sub, ExternalSubjectPrefix) }

// externalSubject is the namespaced subject for a subject asserted by
// issuer: stable, at most 47 ASCII characters, different for every
// (issuer, subject) pair.
func externalSubject(issuer, sub string) string {
	h := sha256.New()
	h.Write([]byte(issuer))
	h.Write([]byte{0})
	h.Write([]byte(sub))
	return ExternalSubjectPrefix + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// nameSubject is the subject of a name's first use: the name with every
// byte outside printable ASCII percent-encoded. Names never contain '%',
// so the encoding is injective.
func nameSubject(name string) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for i := 0; i < len(name); i++ {
		b := name[i]
		if b < 0x20 || b > 0x7e {
			sb.WriteByte('%')
			sb.WriteByte(hex[b>>4])
			sb.WriteByte(hex[b&15])
			continue
		}
		sb.WriteByte(b)
	}
	return sb.String()
}

// subjectNames lists the user names a local subject may belong to; the
// caller checks which user really has it.
func subjectNames(sub string) []string {
	names := []string{sub} // a name stored before names were validated
	if i := strings.IndexByte(sub, '/'); i > 0 {
		sub = sub[:i]
	}
	if n, ok := decodeNameSubject(sub); ok && n != names[0] {
		names = append(names, n)
	}
	return names
}

func decodeNameSubject(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			sb.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		var b byte
		for _, c := range []byte(s[i+1 : i+3]) {
			switch {
			case c >= '0' && c <= '9':
				b = b<<4 | (c - '0')
			case c >= 'A' && c <= 'F':
				b = b<<4 | (c - 'A' + 10)
			default:
				return "", false
			}
		}
		sb.WriteByte(b)
		i += 2
	}
	return sb.String(), true
}

// nameUse is the record of a name that was used as a user name or a
// client id (storage kind subjects, by name, never expiring): the
// subject it was last given, whether a client or a user holds it, and
// whether the config does. Client ids are recorded too, so that a user
// never gets a (removed) client's subject.
type nameUse struct {
	Sub    string `json:"sub"`
	Config bool   `json:"config,omitempty"`
	Client bool   `json:"client,omitempty"`
	// Removed marks a config user or client that has left the config
	// and whose tokens were revoked for it (startSubjects).
	Removed bool `json:"removed,omitempty"`
}

// recordNameUse remembers that name was given sub.
func recordNameUse(tx storage.Tx, name string, n nameUse) error {
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	return tx.Put(storage.KindSubjects, name, storage.Record{Value: b})
}

// readNameUse returns the record of name, or nil.
func readNameUse(tx storage.Tx, name string) (*nameUse, error) {
	rec, err := tx.Get(storage.KindSubjects, name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var n nameUse
	if err := json.Unmarshal(rec.Value, &n); err != nil {
		return nil, fmt.Errorf("subject record of %q is malformed: %w", name, err)
	}
	return &n, nil
}

// assignSubject gives a new user of this name its subject and records
// it: the name's first-use subject if the name was never used (by a user
// or a client), a fresh one otherwise. A config user keeps the subject
// recorded for it.
func assignSubject(tx storage.Tx, name string, config bool) (string, error) {
	prev, err := readNameUse(tx, name)
	if err != nil {
		return "", err
	}
	if prev != nil && config && prev.Config && !prev.Client {
		if prev.Removed { // back in the config: its old tokens stay revoked
			return prev.Sub, recordNameUse(tx, name, nameUse{Sub: prev.Sub, Config: true})
		}
		return prev.Sub, nil
	}
	sub := nameSubject(name)
	if prev != nil {
		sub += "/" + tokens.RandomID(6)
	}
	return sub, recordNameUse(tx, name, nameUse{Sub: sub, Config: config})
}

// recordClientTx records that a client of this id exists, unless that
// is recorded already.
func recordClientTx(tx storage.Tx, id string, config bool) error {
	want := nameUse{Sub: id, Client: true, Config: config}
	if prev, err := readNameUse(tx, id); err != nil || (prev != nil && *prev == want) {
		return err
	}
	return recordNameUse(tx, id, want)
}

// leftConfig is a config user or client that is no longer configured.
type leftConfig struct {
	name string
	use  nameUse
}

// startSubjects checks the config's users and clients against storage
// and records them: a config client may not have the name of a stored
// user or of any user that ever was (its subject is its id and cannot be
// made unique), a config user may not have a stored client's id, and
// config users get their subjects. It returns the config users and
// clients that left the config since it was last recorded, whose tokens
// the caller revokes (endLeftConfig).
func (e *Engine) startSubjects(ctx context.Context, st storage.Store) ([]leftConfig, error) {
	us := e.users
	var left []leftConfig
	subs := map[string]string{}
	err := st.Update(ctx, func(tx storage.Tx) error {
		left, subs = left[:0], map[string]string{}
		// First, before the records below overwrite any: who left.
		err := tx.ForEach(storage.KindSubjects, func(name string, rec storage.Record) error {
			var n nameUse
			if json.Unmarshal(rec.Value, &n) != nil || !n.Config || n.Removed {
				return nil
			}
			if _, ok := e.clients[name]; ok && n.Client {
				return nil
			}
			if _, ok := us.config[name]; ok && !n.Client {
				return nil
			}
			// A run-time user or client of the name now holds the record
			// (or a record written before kinds were told apart).
			kind := storage.KindUsers
			if n.Client {
				kind = storage.KindClients
			}
			if _, err := tx.Get(kind, name); err == nil {
				return nil
			} else if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			left = append(left, leftConfig{name: name, use: n})
			return nil
		})
		if err != nil {
			return err
		}
		for id := range e.clients {
			if _, err := tx.Get(storage.KindUsers, id); err == nil {
				return fmt.Errorf("client %q: a user of that name was created at run time; users and clients must have different names: remove the user (caddy oauth user remove %s) or rename the client", id, id)
			} else if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			prev, err := readNameUse(tx, id)
			if err != nil {
				return err
			}
			if prev != nil && !prev.Client {
				return fmt.Errorf("client %q: a user of that name existed (subject %q), and a client's subject is its id; subjects are never reassigned, choose another client id", id, prev.Sub)
			}
			if err := recordClientTx(tx, id, true); err != nil {
				return err
			}
		}
		for name := range us.config {
			if _, err := tx.Get(storage.KindClients, name); err == nil {
				return fmt.Errorf("user %q: a client of that id was registered at run time; users and clients must have different names: remove the client (caddy oauth client remove %s) or rename the user", name, name)
			} else if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			// A config user would shadow a run-time user of the name,
			// whose tokens would live on under another person's name.
			if _, err := tx.Get(storage.KindUsers, name); err == nil {
				return fmt.Errorf("user %q: a user of that name was created at run time; remove it first (caddy oauth user remove %s, which revokes its tokens) or rename the config user", name, name)
			} else if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			sub, err := assignSubject(tx, name, true)
			if err != nil {
				return err
			}
			subs[name] = sub
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for name, sub := range subs {
		us.config[name].Sub = sub
	}
	return left, nil
}

// endLeftConfig revokes the grants and access tokens of config users and
// clients that left the config (and ends the users' sign-in sessions),
// as removing them at run time would, and marks them done so the next
// start does not revoke again.
func (e *Engine) endLeftConfig(ctx context.Context, left []leftConfig) error {
	for _, l := range left {
		markDone := func(tx storage.Tx) error {
			cur, err := readNameUse(tx, l.name)
			if err != nil || cur == nil || *cur != l.use {
				return err // taken over meanwhile (by this start): nothing to mark
			}
			cur.Removed = true
			return recordNameUse(tx, l.name, *cur)
		}
		var err error
		if l.use.Client {
			_, err = e.revokeAllThen(ctx, tokens.BeforeKey("client", l.name), func(f *familyRecord) bool { return f.ClientID == l.name }, markDone)
		} else {
			sub := l.use.Sub
			_, err = e.revokeAllThen(ctx, tokens.BeforeKey("sub", sub), func(f *familyRecord) bool { return f.Subject == sub },
				func(tx storage.Tx) error {
					if err := endSessionsTx(tx, sub); err != nil {
						return err
					}
					return markDone(tx)
				})
		}
		if err != nil {
			kind := "user"
			if l.use.Client {
				kind = "client"
			}
			return fmt.Errorf("revoking the tokens of %s %q, which left the config: %w", kind, l.name, err)
		}
		e.logger.Info("revoked the tokens of a config user or client that left the config", zap.String("name", l.name), zap.Bool("client", l.use.Client))
	}
	return nil
}

// nameWasUser reports whether a user of this name ever existed, so that
// a client id cannot take over a removed user's subject.
func nameWasUser(ctx context.Context, st storage.Store, name string) (bool, error) {
	var used bool
	err := st.View(ctx, func(tx storage.Tx) error {
		n, err := readNameUse(tx, name)
		used = n != nil && !n.Client
		return err
	})
	return used, err
}
