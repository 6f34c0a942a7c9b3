package grants

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// ClientIDMetadataConfig turns on client ID metadata documents
// (draft-ietf-oauth-client-id-metadata-document, as the MCP
// authorization specification uses them): a client_id that is an https
// URL names the JSON document, fetched from there, that registers the
// client. Such clients are public (none, or private_key_jwt with a
// jwks_uri) and never trusted, like clients that registered themselves.
// A nil *ClientIDMetadataConfig, the default, leaves it off.
type ClientIDMetadataConfig struct {
	// AllowedHosts, when set, are the only hosts whose documents are
	// fetched (exact, case-insensitive). Default: any public host.
	AllowedHosts []string
	// CacheMin is the least time a fetched document (or a failure) is
	// kept, whatever its Cache-Control says. Default 1m.
	CacheMin time.Duration
	// CacheMax is the most time a fetched document is kept. Default 24h.
	CacheMax time.Duration
	// MaxSize is the largest document in bytes. Default 5120.
	MaxSize int64
	// Scopes are the scopes such clients may ask for. Default: openid
	// profile email offline_access.
	Scopes []string
	// Audience is the resources their tokens may be for. Default: the
	// issuer.
	Audience []string
}

// Client ID metadata document defaults.
const (
	DefaultCIMDCacheMin = time.Minute
	DefaultCIMDCacheMax = 24 * time.Hour
	DefaultCIMDMaxSize  = 5 << 10
	cimdFetchTimeout    = 5 * time.Second
	cimdCacheEntries    = 1000
)

// cimd resolves client ID metadata documents into clients, cached.
type cimd struct {
	cfg   ClientIDMetadataConfig
	rules *registrar // the checks and defaults of registered clients
	fetch *safeFetcher
	http  *http.Client
	mu    sync.Mutex
	cache map[string]*cimdEntry
}

type cimdEntry struct {
	c       *Client // nil: the document was refused
	reason  string
	expires time.Time
}

func newCIMD(cfg *ClientIDMetadataConfig) (*cimd, error) {
	if cfg == nil {
		return nil, nil
	}
	c := *cfg
	if c.CacheMin < 0 || c.CacheMax < 0 || c.MaxSize < 0 {
		return nil, errors.New("client_id_metadata: cache_min, cache_max and max_size must be positive (or absent for their defaults)")
	}
	if c.CacheMin == 0 {
		c.CacheMin = DefaultCIMDCacheMin
	}
	if c.CacheMax == 0 {
		c.CacheMax = DefaultCIMDCacheMax
	}
	if c.MaxSize == 0 {
		c.MaxSize = DefaultCIMDMaxSize
	}
	if c.CacheMax < c.CacheMin {
		return nil, errors.New("client_id_metadata: cache_max must not be shorter than cache_min")
	}
	for i, h := range c.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/:@ ") {
			return nil, fmt.Errorf("client_id_metadata: allowed host %q must be a host name without scheme, port or path", h)
		}
		c.AllowedHosts[i] = strings.ToLower(h)
	}
	rules, err := newRegistrar(&RegistrationConfig{Scopes: c.Scopes, Audience: c.Audience})
	if err != nil {
		return nil, fmt.Errorf("client_id_metadata: %s", strings.TrimPrefix(err.Error(), "registration: "))
	}
	m := &cimd{cfg: c, rules: rules, fetch: &safeFetcher{timeout: cimdFetchTimeout, maxSize: c.MaxSize}, cache: map[string]*cimdEntry{}}
	m.http = m.fetch.client()
	return m, nil
}

// isCIMDClientID reports whether a client_id is meant as a metadata
// document URL.
func isCIMDClientID(id string) bool { return strings.HasPrefix(id, "https://") }

// checkURL applies the draft's rules to a client_id URL (§3): https, a
// host, a path other than "/", no dot segments, fragment, userinfo; and
// the allow-list. A literal IP must be public; a name is checked when
// it is resolved.
func (m *cimd) checkURL(id string) error {
	u, err := url.Parse(id)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return errors.New("the client_id must be an https URL")
	case u.User != nil || u.Fragment != "" || strings.Contains(id, "#"):
		return errors.New("the client_id URL must have no userinfo or fragment")
	case u.Path == "" || u.Path == "/":
		return errors.New("the client_id URL must have a path")
	case len(id) > 2000:
		return errors.New("the client_id URL is too long")
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return errors.New("the client_id URL must not have . or .. path segments")
		}
	}
	host := strings.ToLower(u.Hostname())
	if len(m.cfg.AllowedHosts) > 0 && !slices.Contains(m.cfg.AllowedHosts, host) {
		return fmt.Errorf("client ID metadata documents from %s are not allowed", host)
	}
	return nil
}

// client returns the client a metadata document URL registers, fetched
// or from the cache; nil when the document is refused (the reason goes
// to the debug log, since the user may see only "unknown client").
func (e *Engine) cimdClient(ctx context.Context, id string) *Client {
	m := e.cimd
	now := time.Now()
	m.mu.Lock()
	if ent, ok := m.cache[id]; ok && now.Before(ent.expires) {
		m.mu.Unlock()
		if ent.c == nil {
			e.debug(ctx, "client ID metadata document refused", zap.String("client_id", id), zap.String("reason", ent.reason))
		}
		return ent.c
	}
	m.mu.Unlock()
	c, ttl, err := m.resolve(ctx, id, now)
	ent := &cimdEntry{c: c, expires: now.Add(ttl)}
	if err != nil {
		ent.reason = err.Error()
		e.debug(ctx, "client ID metadata document refused", zap.String("client_id", id), zap.String("reason", ent.reason))
	}
	m.mu.Lock()
	if len(m.cache) >= cimdCacheEntries {
		for k, v := range m.cache {
			if !now.Before(v.expires) || len(m.cache) >= cimdCacheEntries {
				delete(m.cache, k)
			}
		}
	}
	m.cache[id] = ent
	m.mu.Unlock()
	return c
}

// resolve fetches and checks a document: the client it registers and
// how long to keep it.
func (m *cimd) resolve(ctx context.Context, id string, now time.Time) (*Client, time.Duration, error) {
	if err := m.checkURL(id); err != nil {
		return nil, m.cfg.CacheMin, err
	}
	body, hdr, err := m.fetch.fetch(ctx, m.http, id)
	if err != nil {
		return nil, m.cfg.CacheMin, err
	}
	ttl := m.cacheTTL(hdr, now)
	meta, oerr := m.rules.parseClientMetadata(body, true)
	if oerr != nil {
		return nil, ttl, errors.New(oerr.Description)
	}
	if meta.ClientID != id {
		return nil, ttl, fmt.Errorf("the document's client_id %q is not its URL", meta.ClientID)
	}
	if meta.TokenEndpointAuthMethod == "" {
		meta.TokenEndpointAuthMethod = AuthNone
	}
	switch meta.TokenEndpointAuthMethod {
	case AuthNone:
	case AuthPrivateKeyJWT:
		if meta.JWKSURI == "" {
			return nil, ttl, errors.New("private_key_jwt needs jwks_uri in a client ID metadata document")
		}
	default:
		return nil, ttl, fmt.Errorf("token_endpoint_auth_method %q: a client ID metadata document describes a public client (none, or private_key_jwt with jwks_uri)", meta.TokenEndpointAuthMethod)
	}
	if meta.JWKS != nil {
		return nil, ttl, errors.New("jwks: a client ID metadata document names its keys with jwks_uri")
	}
	if slices.Contains(meta.GrantTypes, GrantClientCredentials) {
		return nil, ttl, errors.New("client_credentials is not available to client ID metadata documents")
	}
	if len(meta.RedirectURIs) == 0 {
		return nil, ttl, errors.New("redirect_uris is required")
	}
	c, oerr := m.rules.client(meta, id)
	if oerr != nil {
		return nil, ttl, errors.New(oerr.Description)
	}
	// Nothing is stored for such a client, so nothing marks it used.
	c.registeredUsed = true
	return c, ttl, nil
}

// cacheTTL is how long to keep a document by its Cache-Control max-age
// (or Expires), within CacheMin and CacheMax; no-store and no-cache
// mean CacheMin.
func (m *cimd) cacheTTL(h http.Header, now time.Time) time.Duration {
	ttl := m.cfg.CacheMin
	cc := strings.ToLower(h.Get("Cache-Control"))
	found := false
	for _, d := range strings.Split(cc, ",") {
		d = strings.TrimSpace(d)
		if d == "no-store" || d == "no-cache" {
			return m.cfg.CacheMin
		}
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n >= 0 {
				ttl, found = time.Duration(min(n, int64(m.cfg.CacheMax/time.Second)+1))*time.Second, true
			}
		}
	}
	if !found {
		if t, err := http.ParseTime(h.Get("Expires")); err == nil {
			ttl = t.Sub(now)
		}
	}
	return min(max(ttl, m.cfg.CacheMin), m.cfg.CacheMax)
}
