package gate

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// CORS is the gate's answer to browsers on other origins. The gate
// answers preflights itself and never forwards them; cross-origin
// requests still need a token and get the CORS response headers, which
// replace any the upstream sets.
type CORS struct {
	// AllowedOrigins are the origins (scheme://host[:port], compared
	// exactly, without regard to case) whose pages may call this API, or
	// the single value "*" for any origin, which excludes
	// allow_credentials. Required.
	AllowedOrigins []string `json:"allowed_origins"`

	// AllowedMethods may be requested in preflights. Default: GET, HEAD,
	// POST.
	AllowedMethods []string `json:"allowed_methods,omitempty"`

	// AllowedHeaders are the request headers pages may send besides the
	// CORS-safelisted ones. Authorization and DPoP are always allowed:
	// the gate needs them. Default: Authorization, DPoP, Content-Type.
	AllowedHeaders []string `json:"allowed_headers,omitempty"`

	// ExposedHeaders are response headers pages may read besides
	// WWW-Authenticate and DPoP-Nonce, which are always exposed: the
	// gate replaces the upstream's CORS headers, so an upstream header a
	// page must read is named here (Mcp-Session-Id for a browser MCP
	// client). Default: none.
	ExposedHeaders []string `json:"exposed_headers,omitempty"`

	// MaxAge is how long browsers may cache a preflight answer. Default:
	// 0, no Access-Control-Max-Age (browsers then cache for 5 s).
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// AllowCredentials lets pages send cookies and TLS client certificates
	// too (Access-Control-Allow-Credentials: true). Default: false; the
	// bearer token needs no credentials mode.
	AllowCredentials bool `json:"allow_credentials,omitempty"`
}

// corsPolicy is a CORS config ready for requests.
type corsPolicy struct {
	anyOrigin   bool
	origins     map[string]bool
	methods     []string
	headers     map[string]bool // lower case
	allowMeth   string
	allowHdrs   string
	expose      string
	maxAge      string
	credentials bool
}

func (c *CORS) validate() error {
	if len(c.AllowedOrigins) == 0 {
		return fmt.Errorf("oauth_protect: cors needs at least one origin: origins https://app.example.com")
	}
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			if len(c.AllowedOrigins) > 1 {
				return fmt.Errorf("oauth_protect: cors origin * stands alone")
			}
			if c.AllowCredentials {
				return fmt.Errorf("oauth_protect: cors origin * cannot go with credentials; list the origins")
			}
			continue
		}
		u, err := url.Parse(o)
		if err != nil || !printableASCII(o) || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.ContainsAny(o, "?#*") {
			return fmt.Errorf("oauth_protect: cors origin %q must be scheme://host[:port], without a path (https://app.example.com)", o)
		}
	}
	for _, m := range c.AllowedMethods {
		if !headerName(m) || m == "*" {
			return fmt.Errorf("oauth_protect: cors method %q is not a method name (list them: GET POST DELETE)", m)
		}
	}
	for _, h := range c.AllowedHeaders {
		if !headerName(h) || h == "*" {
			return fmt.Errorf("oauth_protect: cors header %q is not a header name (list them: Content-Type X-Requested-With)", h)
		}
	}
	for _, h := range c.ExposedHeaders {
		if !headerName(h) || h == "*" {
			return fmt.Errorf("oauth_protect: cors expose %q is not a header name (list them: Mcp-Session-Id X-Request-Id)", h)
		}
	}
	if c.MaxAge < 0 {
		return fmt.Errorf("oauth_protect: cors max_age must not be negative")
	}
	return nil
}

func (c *CORS) policy() corsPolicy {
	p := corsPolicy{origins: map[string]bool{}, headers: map[string]bool{"authorization": true, "dpop": true}, credentials: c.AllowCredentials}
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			p.anyOrigin = true
		}
		p.origins[strings.ToLower(o)] = true
	}
	p.methods = c.AllowedMethods
	if len(p.methods) == 0 {
		p.methods = []string{http.MethodGet, http.MethodHead, http.MethodPost}
	}
	hdrs := c.AllowedHeaders
	if len(hdrs) == 0 {
		hdrs = []string{"Content-Type"}
	}
	names := []string{"Authorization", "DPoP"}
	for _, h := range hdrs {
		if !p.headers[strings.ToLower(h)] {
			p.headers[strings.ToLower(h)] = true
			names = append(names, h)
		}
	}
	// A browser DPoP client must read the nonce (RFC 9449 §8), and every
	// client the challenge.
	p.expose = strings.Join(append([]string{"WWW-Authenticate", "DPoP-Nonce"}, c.ExposedHeaders...), ", ")
	p.allowMeth = strings.Join(p.methods, ", ")
	p.allowHdrs = strings.Join(names, ", ")
	if c.MaxAge > 0 {
		p.maxAge = strconv.FormatInt(int64(time.Duration(c.MaxAge)/time.Second), 10)
	}
	return p
}

func (p *corsPolicy) allowedOrigin(origin string) bool {
	return p.anyOrigin || p.origins[strings.ToLower(origin)]
}

// preflight answers a CORS preflight (Fetch §3.2.3): 204 with the
// allowances for an allowed origin, method and headers; otherwise 403
// without them, so the browser refuses the request.
func (p *corsPolicy) preflight(w http.ResponseWriter, r *http.Request, origin string) {
	h := w.Header()
	h.Set("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	h.Set("Cache-Control", "no-store")
	if !p.allowedOrigin(origin) || !slices.Contains(p.methods, r.Header.Get("Access-Control-Request-Method")) || !p.headersAllowed(r) {
		drainBody(r)
		w.WriteHeader(http.StatusForbidden)
		return
	}
	h.Del("Cache-Control")
	p.setOrigin(h, origin)
	h.Set("Access-Control-Allow-Methods", p.allowMeth)
	h.Set("Access-Control-Allow-Headers", p.allowHdrs)
	if p.maxAge != "" {
		h.Set("Access-Control-Max-Age", p.maxAge)
	}
	drainBody(r)
	w.WriteHeader(http.StatusNoContent)
}

func (p *corsPolicy) headersAllowed(r *http.Request) bool {
	for _, v := range r.Header.Values("Access-Control-Request-Headers") {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name != "" && !p.headers[strings.ToLower(name)] {
				return false
			}
		}
	}
	return true
}

func (p *corsPolicy) setOrigin(h http.Header, origin string) {
	if p.anyOrigin {
		h.Set("Access-Control-Allow-Origin", "*")
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// wrap makes the answer to a cross-origin request carry the gate's CORS
// headers, whether the gate refuses it or the upstream answers: the gate
// owns CORS here, so the upstream's own CORS headers are replaced.
func (p *corsPolicy) wrap(w http.ResponseWriter, origin string) http.ResponseWriter {
	return &corsWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, p: p, origin: origin}
}

// corsWriter embeds the wrapper by value: one allocation per
// cross-origin request, not two.
type corsWriter struct {
	caddyhttp.ResponseWriterWrapper
	p       *corsPolicy
	origin  string
	written bool
}

func (cw *corsWriter) WriteHeader(status int) {
	if !cw.written && status >= 200 {
		cw.written = true
		h := cw.Header()
		for name := range h {
			if strings.HasPrefix(name, "Access-Control-") {
				delete(h, name)
			}
		}
		h.Add("Vary", "Origin")
		if cw.p.allowedOrigin(cw.origin) {
			cw.p.setOrigin(h, cw.origin)
			h.Set("Access-Control-Expose-Headers", cw.p.expose)
		}
	}
	cw.ResponseWriterWrapper.WriteHeader(status)
}

func (cw *corsWriter) Write(b []byte) (int, error) {
	if !cw.written {
		cw.WriteHeader(http.StatusOK)
	}
	return cw.ResponseWriterWrapper.Write(b)
}

// ReadFrom keeps reverse_proxy's io.Copy going through Write, so the
// headers are set before the first byte.
func (cw *corsWriter) ReadFrom(r io.Reader) (int64, error) {
	if !cw.written {
		cw.WriteHeader(http.StatusOK)
	}
	return io.Copy(&cw.ResponseWriterWrapper, r)
}
