package grants

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// sessionRecord is a signed-in browser, stored by the hash of its cookie.
type sessionRecord struct {
	// User is the user's name, shown on pages.
	User string `json:"user"`
	// Sub is the user's subject: a session of a removed user never
	// becomes the session of a new user of the same name. Sessions
	// stored before it was have the name's first-use subject.
	Sub      string `json:"sub,omitempty"`
	AuthTime int64  `json:"auth_time"`
}

// session returns the browser's sign-in session, or nil.
func (w *web) session(ctx context.Context, r *http.Request) (*sessionRecord, string, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || len(c.Value) != 43 {
		return nil, "", nil
	}
	key := hashToken(c.Value)
	var s sessionRecord
	err = w.store.View(ctx, func(tx storage.Tx) error {
		_, err := getJSON(tx, storage.KindSessions, key, &s)
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	if s.Sub == "" {
		s.Sub = nameSubject(s.User)
	}
	u, err := w.users.LookupSubject(ctx, s.Sub)
	if err != nil && !errors.Is(err, ErrUserNotFound) {
		return nil, "", err // storage failed: not a reason to sign the user out
	}
	if err != nil || u.Name != s.User {
		return nil, "", nil // the user was removed: the session is worthless
	}
	return &s, key, nil
}

// startSession stores a new session for u and sets its cookie.
func (w *web) startSession(ctx context.Context, rw http.ResponseWriter, r *http.Request, u *User) (*sessionRecord, error) {
	tok := newSecretToken()
	s := &sessionRecord{User: u.Name, Sub: u.Subject(), AuthTime: time.Now().Unix()}
	err := w.store.Update(ctx, func(tx storage.Tx) error {
		return putJSON(tx, storage.KindSessions, hashToken(tok), s, time.Now().Add(w.cfg.SessionTTL))
	})
	if err != nil {
		return nil, err
	}
	w.setCookie(rw, r, sessionCookie, tok, int(w.cfg.SessionTTL/time.Second), http.SameSiteLaxMode)
	return s, nil
}

// endSession deletes the session and its cookie.
func (w *web) endSession(ctx context.Context, rw http.ResponseWriter, r *http.Request, key string) error {
	w.setCookie(rw, r, sessionCookie, "", -1, http.SameSiteLaxMode)
	if key == "" {
		return nil
	}
	return w.store.Update(ctx, func(tx storage.Tx) error { return tx.Delete(storage.KindSessions, key) })
}

// consentKey names what user allowed client.
func consentKey(user, client string) string { return user + "\x00" + client }

// hasConsent reports whether the user already allowed every scope.
func (w *web) hasConsent(ctx context.Context, user, client string, scopes []string) (bool, error) {
	var allowed []string
	err := w.store.View(ctx, func(tx storage.Tx) error {
		_, err := getJSON(tx, storage.KindConsents, consentKey(user, client), &allowed)
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, s := range scopes {
		if !slices.Contains(allowed, s) {
			return false, nil
		}
	}
	return true, nil
}

// consentTTL bounds how long a consent is remembered.
const consentTTL = 90 * 24 * time.Hour

// remember adds scopes to what the user allowed the client.
func (w *web) rememberConsent(ctx context.Context, user, client string, scopes []string) error {
	return w.store.Update(ctx, func(tx storage.Tx) error {
		var allowed []string
		if _, err := getJSON(tx, storage.KindConsents, consentKey(user, client), &allowed); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		for _, s := range scopes {
			if !slices.Contains(allowed, s) {
				allowed = append(allowed, s)
			}
		}
		return putJSON(tx, storage.KindConsents, consentKey(user, client), allowed, time.Now().Add(consentTTL))
	})
}
