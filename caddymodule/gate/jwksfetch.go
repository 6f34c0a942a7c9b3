package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Bounds of what the gate fetches from a trusted issuer.
const (
	// trustFetchTimeout bounds one request to an issuer (discovery, keys,
	// introspection), connection included: a request waiting on it
	// waits no longer.
	trustFetchTimeout = 5 * time.Second
	// maxMetadataBytes and maxJWKSBytes cap the bodies read.
	maxMetadataBytes = 256 << 10
	maxJWKSBytes     = 1 << 20
	// jwksRefresh is how often the keys are fetched again in the
	// background while tokens come in, unless the issuer's Cache-Control
	// max-age says otherwise (kept between jwksMinRefresh and
	// jwksMaxRefresh).
	jwksRefresh    = 15 * time.Minute
	jwksMinRefresh = 1 * time.Minute
	jwksMaxRefresh = 1 * time.Hour
	// unknownKidRefetch is the least time between two fetches caused by
	// a token whose kid is not in the keys (a rotation at the issuer, or
	// a forged kid sent to make the gate hammer the issuer): at most one
	// fetch per 10 s per issuer, as Keycloak's adapters do, whatever the
	// number of such tokens.
	unknownKidRefetch = 10 * time.Second
	// discoveryRetry is the least time between two failed discoveries.
	discoveryRetry = 10 * time.Second
)

// newTrustClient is the HTTP client for trusted issuers: a timeout on
// every request, and redirects followed only on the same scheme and
// host, at most three.
func newTrustClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = trustFetchTimeout
	return &http.Client{Timeout: trustFetchTimeout, Transport: tr, CheckRedirect: sameOriginRedirect}
}

// sameOriginRedirect refuses a redirect to another scheme or host: the
// configured issuer vouches for its own origin only.
func sameOriginRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("too many redirects")
	}
	if req.URL.Scheme != via[0].URL.Scheme || req.URL.Host != via[0].URL.Host {
		return fmt.Errorf("redirect to another origin (%s://%s) refused", req.URL.Scheme, req.URL.Host)
	}
	return nil
}

// providerMeta is what the gate reads of an issuer's discovery document.
type providerMeta struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// keySource holds one issuer's discovery document and signing keys in
// memory. Nothing it fetches is named by a token: the URLs are the
// configured issuer's well-known ones and what its document says.
type keySource struct {
	issuer  string
	jwksURI string // configured; "" to take it from discovery
	client  *http.Client

	mu           sync.Mutex
	meta         *providerMeta
	metaErr      error
	metaFailedAt time.Time
	set          jwk.Set
	fetchedAt    time.Time // the last JWKS fetch, successful or not
	refreshAt    time.Time // when the keys are due to be fetched again
	refreshing   bool

	lastErr error // of the last JWKS fetch

	fetchMu sync.Mutex   // one JWKS fetch at a time; the others wait for its result
	discMu  sync.Mutex   // one discovery at a time
	fetches atomic.Int64 // JWKS fetches made, for tests and metrics
}

func newKeySource(issuer, jwksURI string, client *http.Client) *keySource {
	return &keySource{issuer: issuer, jwksURI: jwksURI, client: client}
}

// metadata returns the issuer's discovery document, fetching it on first
// use. A failure is remembered for discoveryRetry, so that a down issuer
// costs one request per interval, not one per token.
func (s *keySource) metadata(now time.Time) (*providerMeta, error) {
	s.mu.Lock()
	if s.meta != nil {
		defer s.mu.Unlock()
		return s.meta, nil
	}
	if s.metaErr != nil && now.Sub(s.metaFailedAt) < discoveryRetry {
		defer s.mu.Unlock()
		return nil, s.metaErr
	}
	s.mu.Unlock()

	s.discMu.Lock()
	defer s.discMu.Unlock()
	s.mu.Lock()
	if s.meta != nil || (s.metaErr != nil && now.Sub(s.metaFailedAt) < discoveryRetry) {
		meta, err := s.meta, s.metaErr
		s.mu.Unlock()
		if meta != nil {
			return meta, nil
		}
		return nil, err
	}
	s.mu.Unlock()
	meta, err := s.discover()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.metaErr, s.metaFailedAt = &unavailableError{issuer: s.issuer, err: err}, now
		return nil, s.metaErr
	}
	s.meta, s.metaErr = meta, nil
	return meta, nil
}

// discover reads <issuer>/.well-known/openid-configuration, or when that
// is not found the RFC 8414 <origin>/.well-known/oauth-authorization-server<path>,
// and checks that it speaks for the configured issuer.
func (s *keySource) discover() (*providerMeta, error) {
	u, err := url.Parse(s.issuer)
	if err != nil {
		return nil, err
	}
	oidcURL := strings.TrimSuffix(s.issuer, "/") + "/.well-known/openid-configuration"
	rfc8414 := u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.EscapedPath(), "/")
	var meta providerMeta
	_, err = s.getJSON(oidcURL, maxMetadataBytes, &meta)
	if err != nil {
		var first = err
		if _, err = s.getJSON(rfc8414, maxMetadataBytes, &meta); err != nil {
			return nil, fmt.Errorf("discovery: %v; %v", first, err)
		}
	}
	if meta.Issuer != s.issuer {
		return nil, fmt.Errorf("discovery: the document is for issuer %q, not %q: set trust_issuer to exactly the issuer the provider names", meta.Issuer, s.issuer)
	}
	if meta.JWKSURI != "" {
		if err := checkRemoteURL(meta.JWKSURI, true); err != nil {
			return nil, fmt.Errorf("discovery: jwks_uri: %v", err)
		}
	}
	if meta.IntrospectionEndpoint != "" {
		if err := checkRemoteURL(meta.IntrospectionEndpoint, true); err != nil {
			return nil, fmt.Errorf("discovery: introspection_endpoint: %v", err)
		}
	}
	return &meta, nil
}

// getJSON GETs a bounded JSON body, returning the response's max-age.
func (s *keySource) getJSON(target string, limit int64, dst any) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), trustFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return 0, fmt.Errorf("GET %s: status %d", target, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return 0, fmt.Errorf("GET %s: %v", target, err)
	}
	if int64(len(body)) > limit {
		return 0, fmt.Errorf("GET %s: body over %d bytes", target, limit)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return 0, fmt.Errorf("GET %s: not the expected JSON: %v", target, err)
	}
	return maxAge(resp.Header.Get("Cache-Control")), nil
}

// maxAge reads Cache-Control max-age; 0 when absent.
func maxAge(cc string) time.Duration {
	for part := range strings.SplitSeq(cc, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(k, "max-age") {
			if n, err := strconv.Atoi(strings.Trim(v, `"`)); err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	return 0
}

// lookup returns the key a token names by kid. The keys are fetched on
// first use; while tokens come in, stale keys are refreshed in the
// background; an unknown kid fetches them again at once, but at most
// once per unknownKidRefetch (and one fetch serves every waiting token).
func (s *keySource) lookup(kid string, now time.Time) (jwk.Key, error) {
	s.mu.Lock()
	set, last := s.set, s.fetchedAt
	stale := set != nil && now.After(s.refreshAt) && !s.refreshing
	if stale {
		s.refreshing = true
	}
	s.mu.Unlock()
	if set == nil {
		var err error
		if set, err = s.fetch(now, last); err != nil {
			return nil, err
		}
	} else if stale {
		go func() { _, _ = s.fetch(time.Now(), last) }()
	}
	if key, ok := lookupKey(set, kid); ok {
		return key, nil
	}
	s.mu.Lock()
	last = s.fetchedAt
	s.mu.Unlock()
	if now.Sub(last) < unknownKidRefetch {
		return nil, &tokens.TokenError{Reason: "unknown kid (keys fetched less than 10s ago)"}
	}
	set, err := s.fetch(now, last)
	if err != nil {
		return nil, err
	}
	if key, ok := lookupKey(set, kid); ok {
		return key, nil
	}
	return nil, &tokens.TokenError{Reason: "unknown kid"}
}

// fetch gets the keys, unless another fetch happened since seen (the
// fetchedAt the caller saw): then its result is used, so concurrent
// callers share one request. While no keys were ever fetched, a failed
// attempt is repeated at most once per unknownKidRefetch.
func (s *keySource) fetch(now, seen time.Time) (jwk.Set, error) {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	s.mu.Lock()
	if s.fetchedAt.After(seen) || (s.set == nil && !s.fetchedAt.IsZero() && now.Sub(s.fetchedAt) < unknownKidRefetch) {
		set, err := s.set, s.lastErr
		s.refreshing = false
		s.mu.Unlock()
		if set == nil {
			return nil, err
		}
		return set, nil
	}
	s.mu.Unlock()

	set, age, err := s.fetchKeys(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetchedAt, s.refreshing = now, false
	if err != nil {
		s.lastErr = &unavailableError{issuer: s.issuer, err: err}
		s.refreshAt = now.Add(jwksMinRefresh) // keep the old keys; try again later
		return nil, s.lastErr
	}
	if age == 0 {
		age = jwksRefresh
	}
	age = min(max(age, jwksMinRefresh), jwksMaxRefresh)
	s.set, s.refreshAt, s.lastErr = set, now.Add(age), nil
	return set, nil
}

// fetchKeys reads the JWKS, from the configured jwks_uri or discovery.
func (s *keySource) fetchKeys(now time.Time) (jwk.Set, time.Duration, error) {
	s.fetches.Add(1)
	target := s.jwksURI
	if target == "" {
		meta, err := s.metadata(now)
		if err != nil {
			return nil, 0, err
		}
		if meta.JWKSURI == "" {
			return nil, 0, errors.New("the discovery document has no jwks_uri: set jwks_uri in trust_issuer")
		}
		target = meta.JWKSURI
	}
	var raw json.RawMessage
	age, err := s.getJSON(target, maxJWKSBytes, &raw)
	if err != nil {
		return nil, 0, err
	}
	set, err := jwk.Parse(raw)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: not a JWK set: %v", target, err)
	}
	return set, age, nil
}
