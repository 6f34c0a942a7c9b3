package gate

import (
	"crypto/sha256"
	"sync"
	"time"
)

// loggedOut holds the sessions signed out on this node, shared by all
// gates of the process, until each would have ended anyway. An
// external provider's session is checked by its seal and dates only, so
// without it a copy of the cookie would keep working after logout until
// the provider's access token expires and the refresh is refused. Keys
// are the hash of the cookie value and of the session's refresh token
// (which older and newer cookies of one session share while the provider
// does not rotate it). Other nodes and a restarted process do not know
// them: there the refused refresh ends the session (docs/browser-login.md).
var loggedOut = &logoutSet{m: map[[32]byte]int64{}}

// maxLoggedOut bounds the set; an entry lives at most until its
// session's end (session_ttl for an external provider).
const maxLoggedOut = 100000

type logoutSet struct {
	mu sync.RWMutex
	m  map[[32]byte]int64 // key → unix time after which it may be forgotten
}

// refreshKey is the set's key of a refresh token (apart from cookie hashes).
func refreshKey(rt string) [32]byte { return sha256.Sum256([]byte("rt\x00" + rt)) }

// add records k until the unix time until. When the set is full the
// entries past their end go first, then arbitrary ones: the bound holds
// even under a flood of sign-outs (each needs a signed-in session).
func (s *logoutSet) add(k [32]byte, until int64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxLoggedOut {
		for old, end := range s.m {
			if end < now.Unix() {
				delete(s.m, old)
			}
		}
		for old := range s.m {
			if len(s.m) < maxLoggedOut {
				break
			}
			delete(s.m, old)
		}
	}
	s.m[k] = until
}

func (s *logoutSet) has(k [32]byte, now time.Time) bool {
	s.mu.RLock()
	end, ok := s.m[k]
	s.mu.RUnlock()
	return ok && now.Unix() <= end
}

// signedOut reports whether the session of cookie key k (opened as sess)
// was signed out on this node.
func signedOut(k [32]byte, sess *session, now time.Time) bool {
	if loggedOut.has(k, now) {
		return true
	}
	return sess != nil && sess.data.RefreshToken != "" && loggedOut.has(sess.rtKey(), now)
}

// rtKey is the session's refresh-token key, hashed once per session.
func (s *session) rtKey() [32]byte {
	s.rtOnce.Do(func() { s.rtHash = refreshKey(s.data.RefreshToken) })
	return s.rtHash
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
	loggedOut.add(k, until, now)
	if sess != nil && sess.data.RefreshToken != "" {
		loggedOut.add(sess.rtKey(), until, now)
	}
}
