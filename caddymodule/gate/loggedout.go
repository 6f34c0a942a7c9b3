package gate

import (
	"crypto/sha256"
	"time"
)

// loggedOut holds the sessions signed out on this node, shared by all
// gates of the process, until each would have ended anyway. An
// external provider's session is checked by its seal and dates only, so
// without it a copy of the cookie would keep working after logout until
// the provider's access token expires and the refresh is refused. Keys
// are the hash of the cookie value and of the session's chain id (which
// every cookie of one sign-in carries through its refreshes, so a stale
// cookie signs out the newer ones too). Other nodes and a restarted
// process do not know them: there the refused refresh ends the session
// (docs/browser-login.md).
var loggedOut = newExpiringMap[[32]byte, struct{}](maxLoggedOut)

// maxLoggedOut bounds the set; an entry lives at most until its
// session's end (session_ttl for an external provider).
const maxLoggedOut = 100000

// chainKey is the set's key of a session's chain: the id every cookie of
// one sign-in carries through its refreshes (apart from cookie hashes).
func chainKey(sid string) [32]byte { return sha256.Sum256([]byte("sid\x00" + sid)) }

// loggedOutHas reports whether k was signed out and is still kept. When
// the set is full the entries past their end go first, then arbitrary
// ones: the bound holds even under a flood of sign-outs (each needs a
// signed-in session).
func loggedOutHas(k [32]byte, now time.Time) bool {
	_, ok := loggedOut.get(k, now)
	return ok
}

// signedOut reports whether the session of cookie key k (opened as sess)
// was signed out on this node.
func signedOut(k [32]byte, sess *session, now time.Time) bool {
	if loggedOutHas(k, now) {
		return true
	}
	return sess != nil && sess.data.SID != "" && loggedOutHas(sess.chainKey(), now)
}

// chainKey is the session's chain key, hashed once per session.
func (s *session) chainKey() [32]byte {
	s.chainOnce.Do(func() { s.chainHash = chainKey(s.data.SID) })
	return s.chainHash
}

// recordLogout remembers a signed-out session until its natural end:
// session_ttl's end for an external provider, else the end of its access
// token (after which the revoked refresh token ends it anyway), and at
// least the default session lifetime when neither is known.
func recordLogout(k [32]byte, sess *session, now time.Time) {
	until := now.Add(defaultSessionTTL).Unix()
	if sess != nil {
		switch {
		case sess.data.End != 0:
			until = sess.data.End
		case sess.data.Expiry != 0:
			until = max(sess.data.Expiry, now.Unix()) + int64(refreshBefore/time.Second)
		}
	}
	loggedOut.put(k, struct{}{}, time.Unix(until, 0), now)
	if sess != nil && sess.data.SID != "" {
		loggedOut.put(sess.chainKey(), struct{}{}, time.Unix(until, 0), now)
	}
}
