// Command load is the benchmark suite's HTTP load generator. It uses the
// standard library only and talks to loopback addresses only.
//
// It runs -c workers over one keep-alive HTTP/1.1 client, first for
// -warmup (not counted), then for -d or until -n requests, and prints
// requests per second, p50, p99 and errors (transport errors and non-2xx
// answers, by status). The last line is machine-readable:
//
//	RESULT rps=… p50_ms=… p99_ms=… requests=… errors=… seconds=… tokens=…
//
// Modes:
//
//	GET a URL, optionally with fixed headers:
//	  load -url http://127.0.0.1:18081/ -H 'X-Test: 1'
//	POST a form with Basic auth (the token endpoint):
//	  load -url http://127.0.0.1:18080/oauth/token -body grant_type=client_credentials -basic id:secret
//	Bearer tokens from the token endpoint, fetched before the timed phase;
//	-tokens 1 repeats one token, -tokens N cycles through N distinct ones:
//	  load -url http://127.0.0.1:18082/ -token-url http://127.0.0.1:18080/oauth/token \
//	       -token-basic id:secret -tokens 2000
//	A DPoP-bound token (the token request carries a proof), sent with the
//	DPoP scheme and a fresh proof on every request, from a pool of -dpop-proofs
//	proofs signed before the timed phase, each sent once:
//	  load -url http://127.0.0.1:18085/ -token-url http://127.0.0.1:18080/oauth/token \
//	       -token-basic id:secret -dpop-proofs 50000
//	Mutual TLS: trust -cacert, present -cert/-key on every connection (the
//	token fetched over it is certificate-bound):
//	  load -url https://localhost:18087/ -cacert ca.pem -cert client.pem -key client.key \
//	       -token-url https://localhost:18086/oauth/token -token-basic id:secret
//	Write a test CA, a server and a client certificate into a directory:
//	  load -make-certs DIR
//	Save the server's CPU profile of the measured phase (Go pprof endpoint):
//	  load … -profile http://localhost:18019/debug/pprof/profile -profile-out cpu.pprof
//	Wait until a URL answers 2xx (readiness check), then exit:
//	  load -wait 20s -url http://127.0.0.1:18081/
package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Hard limits so that a mistyped flag cannot turn this into something that
// runs for long or opens many connections.
const (
	maxWorkers  = 1024
	maxDuration = 10 * time.Minute
	maxTokens   = 1_000_000
	reqTimeout  = 10 * time.Second
)

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

type config struct {
	url        string
	method     string
	headers    http.Header
	body       string
	basic      string // "Basic …" header value, or ""
	workers    int
	duration   time.Duration
	maxReqs    int64
	warmup     time.Duration
	tokenURL   string
	tokenBody  string
	tokenBasic string
	tokens     int
	tokensFile string
	label      string
	profileURL string
	profileOut string
	dpopProofs int    // >0: DPoP mode, this many proofs
	dpopHTU    string // the proofs' htu (default: -url without its query)
	dpop       *dpopKey
	tls        *tls.Config
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg        config
		hdrs       headerFlags
		basic      string
		tokenBasic string
		wait       time.Duration
		caFile     string
		certFile   string
		keyFile    string
		makeDir    string
	)
	flag.StringVar(&cfg.url, "url", "", "target URL (loopback only)")
	flag.StringVar(&cfg.method, "method", "", "HTTP method (default GET, or POST when -body is set)")
	flag.Var(&hdrs, "H", "fixed request header 'Name: value' (repeatable)")
	flag.StringVar(&cfg.body, "body", "", "form body to POST (application/x-www-form-urlencoded)")
	flag.StringVar(&basic, "basic", "", "Basic auth credentials id:secret for every request")
	flag.IntVar(&cfg.workers, "c", 64, "concurrent workers")
	flag.DurationVar(&cfg.duration, "d", 5*time.Second, "measured duration")
	flag.Int64Var(&cfg.maxReqs, "n", 0, "stop after this many measured requests (0: no limit; -d still applies)")
	flag.DurationVar(&cfg.warmup, "warmup", time.Second, "warm-up duration before measuring (not counted)")
	flag.StringVar(&cfg.tokenURL, "token-url", "", "token endpoint: fetch bearer tokens before the timed phase")
	flag.StringVar(&cfg.tokenBody, "token-body", "grant_type=client_credentials", "form body of each token request")
	flag.StringVar(&tokenBasic, "token-basic", "", "Basic auth credentials id:secret for the token endpoint")
	flag.IntVar(&cfg.tokens, "tokens", 1, "number of distinct tokens to fetch and cycle through (with -token-url)")
	flag.StringVar(&cfg.tokensFile, "tokens-file", "", "with -token-url: keep the fetched tokens in this file, and use the file's instead when it already holds -tokens of them (a baseline and its figure can then share one pool)")
	flag.StringVar(&cfg.label, "label", "", "label printed with the results")
	flag.StringVar(&cfg.profileURL, "profile", "", "pprof CPU profile URL of the server, fetched during the measured phase")
	flag.StringVar(&cfg.profileOut, "profile-out", "cpu.pprof", "file for the -profile output")
	flag.IntVar(&cfg.dpopProofs, "dpop-proofs", 0, "DPoP mode: get a DPoP-bound token (the token request carries a proof) and send it with this many proofs, made before the timed phase, one per request, never one twice")
	flag.StringVar(&cfg.dpopHTU, "dpop-htu", "", "with -dpop-proofs: the proofs' htu (default: -url without its query)")
	flag.StringVar(&caFile, "cacert", "", "https: the CA certificate (PEM) that signed the server's certificate")
	flag.StringVar(&certFile, "cert", "", "https: client certificate (PEM) to present on every connection, with -key")
	flag.StringVar(&keyFile, "key", "", "https: the client certificate's private key (PEM)")
	flag.StringVar(&makeDir, "make-certs", "", "only write a test CA, a server certificate for localhost and a client certificate into this directory, then exit")
	flag.DurationVar(&wait, "wait", 0, "only wait up to this long for -url to answer 2xx, then exit")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if makeDir != "" {
		return makeCerts(makeDir)
	}

	if err := checkLoopbackURL(cfg.url); err != nil {
		return err
	}
	for _, u := range []string{cfg.tokenURL, cfg.profileURL} {
		if u == "" {
			continue
		}
		if err := checkLoopbackURL(u); err != nil {
			return err
		}
	}
	if cfg.workers < 1 || cfg.workers > maxWorkers {
		return fmt.Errorf("-c must be between 1 and %d", maxWorkers)
	}
	if cfg.duration <= 0 || cfg.duration > maxDuration || cfg.warmup < 0 || cfg.warmup > maxDuration {
		return fmt.Errorf("-d must be positive and -d, -warmup at most %s", maxDuration)
	}
	if cfg.tokens < 1 || cfg.tokens > maxTokens {
		return fmt.Errorf("-tokens must be between 1 and %d", maxTokens)
	}
	if cfg.dpopProofs < 0 || cfg.dpopProofs > maxTokens {
		return fmt.Errorf("-dpop-proofs must be between 0 and %d", maxTokens)
	}
	if cfg.dpopProofs > 0 {
		if cfg.tokenURL == "" || cfg.tokens != 1 || cfg.tokensFile != "" {
			return errors.New("-dpop-proofs needs -token-url with one token (-tokens 1, no -tokens-file)")
		}
		if cfg.dpopHTU == "" {
			cfg.dpopHTU = cfg.url
		}
		var err error
		if cfg.dpopHTU, err = htuOf(cfg.dpopHTU); err != nil {
			return fmt.Errorf("-dpop-htu: %w", err)
		}
		if cfg.dpop, err = newDPoPKey(); err != nil {
			return err
		}
	}
	if caFile != "" || certFile != "" {
		var err error
		if cfg.tls, err = tlsConfig(caFile, certFile, keyFile); err != nil {
			return err
		}
	}
	cfg.headers = http.Header{}
	for _, h := range hdrs {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return fmt.Errorf("-H %q: want 'Name: value'", h)
		}
		cfg.headers.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if basic != "" {
		cfg.basic = basicHeader(basic)
	}
	if tokenBasic != "" {
		cfg.tokenBasic = basicHeader(tokenBasic)
	}
	if cfg.method == "" {
		cfg.method = http.MethodGet
		if cfg.body != "" {
			cfg.method = http.MethodPost
		}
	}

	client := newClient(cfg.workers, cfg.tls)
	if wait > 0 {
		return waitReady(client, cfg.url, wait)
	}

	var pool []string
	if cfg.tokenURL != "" {
		start := time.Now()
		var err error
		if pool, err = readTokens(cfg.tokensFile, cfg.tokens); err != nil {
			return err
		}
		if cfg.dpopProofs > 0 {
			pool = nil // never from a file: the token is bound to this process's key
		}
		if pool == nil {
			if pool, err = fetchTokens(client, cfg); err != nil {
				return err
			}
			el := time.Since(start)
			fmt.Fprintf(os.Stderr, "fetched %d distinct tokens in %s (%.0f tokens/s)\n",
				len(pool), el.Round(time.Millisecond), float64(len(pool))/el.Seconds())
			if cfg.tokensFile != "" {
				if err := os.WriteFile(cfg.tokensFile, []byte(strings.Join(pool, "\n")+"\n"), 0o600); err != nil {
					return err
				}
			}
		} else {
			fmt.Fprintf(os.Stderr, "using %d tokens from %s\n", len(pool), cfg.tokensFile)
		}
		if err := checkBinding(cfg, pool[0]); err != nil {
			return err
		}
	}

	var proofs *proofPool
	if cfg.dpopProofs > 0 {
		start := time.Now()
		var err error
		if proofs, err = makeProofs(cfg.dpop, cfg.dpopProofs, cfg.method, cfg.dpopHTU, pool[0]); err != nil {
			return err
		}
		el := time.Since(start)
		fmt.Fprintf(os.Stderr, "signed %d DPoP proofs for %s %s in %s (%.0f/s)\n",
			len(proofs.proofs), cfg.method, cfg.dpopHTU, el.Round(time.Millisecond), float64(len(proofs.proofs))/el.Seconds())
		// The last proof must still be inside the server's iat window
		// when it is sent: 5 s of margin for the requests in flight at the
		// deadline and the clocks.
		if used := time.Since(proofs.created) + cfg.warmup + cfg.duration + 5*time.Second; used > dpopWindow {
			return fmt.Errorf("the proofs would be %s old by the end of the run, more than the server's %s iat window: use fewer -dpop-proofs or a shorter -d/-warmup",
				used.Round(time.Second), dpopWindow)
		}
	}

	if cfg.warmup > 0 {
		phase(client, cfg, pool, proofs, cfg.warmup, 0)
	}
	var profErr chan error
	if cfg.profileURL != "" {
		profErr = make(chan error, 1)
		go func() { profErr <- fetchProfile(cfg) }()
	}
	res := phase(client, cfg, pool, proofs, cfg.duration, cfg.maxReqs)
	res.print(cfg, len(pool))
	if proofs != nil {
		used := min(proofs.next.Load(), int64(len(proofs.proofs)))
		fmt.Printf("  %d DPoP proofs signed before the timed phase, %d sent (warm-up included), each once\n", len(proofs.proofs), used)
		if proofs.ranOut.Load() {
			fmt.Printf("  the proof pool ran out: the phase ended early (%.2fs measured); raise -dpop-proofs\n", res.elapsed.Seconds())
		}
	}
	if profErr != nil {
		if err := <-profErr; err != nil {
			return fmt.Errorf("profile: %w", err)
		}
		fmt.Fprintf(os.Stderr, "CPU profile of the measured phase written to %s\n", cfg.profileOut)
	}
	return nil
}

// fetchProfile saves a Go pprof CPU profile covering the measured phase.
func fetchProfile(cfg config) error {
	secs := int(math.Ceil(cfg.duration.Seconds()))
	u := cfg.profileURL + "?seconds=" + fmt.Sprint(secs)
	c := newClient(1, nil)
	c.Timeout = time.Duration(secs)*time.Second + 30*time.Second
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", u, resp.StatusCode)
	}
	f, err := os.Create(cfg.profileOut)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func basicHeader(cred string) string {
	id, secret, _ := strings.Cut(cred, ":")
	// RFC 6749 §2.3.1: id and secret are form-encoded before Base64.
	raw := url.QueryEscape(id) + ":" + url.QueryEscape(secret)
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(raw))
}

// checkLoopbackURL allows only http(s) URLs whose host is a loopback
// address.
func checkLoopbackURL(raw string) error {
	if raw == "" {
		return errors.New("-url is required")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want an http:// or https:// URL on 127.0.0.1 or localhost", raw)
	}
	h := u.Hostname()
	if h == "localhost" {
		return nil
	}
	ip := net.ParseIP(h)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: only loopback hosts are allowed", raw)
	}
	return nil
}

// newClient returns a keep-alive HTTP/1.1 client that can hold one idle
// connection per worker and dials loopback addresses only; tlsCfg (may be
// nil) is its TLS configuration for https URLs.
func newClient(workers int, tlsCfg *tls.Config) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return nil, fmt.Errorf("refusing to dial non-loopback address %s", addr)
			}
			if host == "localhost" {
				// The benchmark's sites listen on 127.0.0.1 only; the name
				// is for TLS (SNI and the server's certificate).
				_, port, _ := net.SplitHostPort(addr)
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        2 * workers,
		MaxIdleConnsPerHost: 2 * workers,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		TLSClientConfig:     tlsCfg,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   reqTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func waitReady(client *http.Client, u string, max time.Duration) error {
	deadline := time.Now().Add(max)
	var last error
	for time.Now().Before(deadline) {
		resp, err := client.Get(u)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 2xx within %s: %v", u, max, last)
}

// readTokens returns the first n tokens of file, or nil when there is no
// file or it holds fewer.
func readTokens(file string, n int) ([]string, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	toks := strings.Fields(string(b))
	if len(toks) < n {
		return nil, nil
	}
	return toks[:n], nil
}

// fetchTokens gets cfg.tokens distinct access tokens from the token
// endpoint using cfg.workers concurrent requests.
func fetchTokens(client *http.Client, cfg config) ([]string, error) {
	n := cfg.tokens
	pool := make([]string, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	workers := min(cfg.workers, n)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				tok, err := fetchToken(client, cfg)
				if err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(n)) // stop the others
					return
				}
				pool[i] = tok
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("fetching tokens from %s: %w", cfg.tokenURL, firstErr)
	}
	seen := make(map[string]struct{}, n)
	for _, t := range pool {
		seen[t] = struct{}{}
	}
	if len(seen) != n {
		return nil, fmt.Errorf("token endpoint returned %d distinct tokens out of %d", len(seen), n)
	}
	return pool, nil
}

func fetchToken(client *http.Client, cfg config) (string, error) {
	req, err := http.NewRequest(http.MethodPost, cfg.tokenURL, strings.NewReader(cfg.tokenBody))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cfg.tokenBasic != "" {
		req.Header.Set("Authorization", cfg.tokenBasic)
	}
	if cfg.dpop != nil {
		htu, err := htuOf(cfg.tokenURL)
		if err != nil {
			return "", err
		}
		p, err := cfg.dpop.proof(http.MethodPost, htu, "")
		if err != nil {
			return "", err
		}
		req.Header.Set("DPoP", p)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("no access_token in the token response")
	}
	if cfg.dpop != nil && !strings.EqualFold(tr.TokenType, "DPoP") {
		return "", fmt.Errorf("token_type %q, want DPoP: the token endpoint did not bind the token to the proof's key", tr.TokenType)
	}
	return tr.AccessToken, nil
}

// Latency histogram: logarithmic buckets 1% wide, from 1µs to ~100s.
const (
	histBase    = 1.01
	histMinNS   = 1000.0
	histBuckets = 1900 // 1.01^1900 * 1µs ≈ 162 s
)

var logBase = math.Log(histBase)

func bucketOf(d time.Duration) int {
	ns := float64(d)
	if ns <= histMinNS {
		return 0
	}
	b := int(math.Ceil(math.Log(ns/histMinNS) / logBase))
	return min(b, histBuckets-1)
}

// bucketUpper is the upper bound of bucket b.
func bucketUpper(b int) time.Duration {
	return time.Duration(histMinNS * math.Pow(histBase, float64(b)))
}

type workerStats struct {
	hist      [histBuckets]uint64
	requests  int64
	transport int64
	status    map[int]int64 // non-2xx answers
	firstErr  string
}

type result struct {
	elapsed  time.Duration
	requests int64
	errors   int64
	hist     [histBuckets]uint64
	status   map[int]int64
	transErr int64
	firstErr string
}

// phase runs the workers for d (or until maxReqs requests) and collects
// their statistics. Requests in flight at the deadline are completed and
// counted; elapsed runs until the last one finished.
//
// With proofs, every request takes the next unused proof; a worker stops
// when the pool is spent, so no proof is sent twice.
func phase(client *http.Client, cfg config, pool []string, proofs *proofPool, d time.Duration, maxReqs int64) result {
	var (
		issued atomic.Int64
		cursor atomic.Uint64
		wg     sync.WaitGroup
	)
	scheme := "Bearer "
	if proofs != nil {
		scheme = "DPoP "
	}
	var bearer []string
	for _, t := range pool {
		bearer = append(bearer, scheme+t)
	}
	stats := make([]*workerStats, cfg.workers)
	start := time.Now()
	deadline := start.Add(d)
	for w := range cfg.workers {
		st := &workerStats{status: map[int]int64{}}
		stats[w] = st
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := strings.NewReader("")
			for time.Now().Before(deadline) {
				if maxReqs > 0 && issued.Add(1) > maxReqs {
					return
				}
				var proof string
				if proofs != nil {
					var ok bool
					if proof, ok = proofs.take(); !ok {
						return
					}
				}
				var rd io.Reader
				if cfg.body != "" {
					body.Reset(cfg.body)
					rd = body
				}
				req, err := http.NewRequest(cfg.method, cfg.url, rd)
				if err != nil {
					st.transport++
					st.firstErr = err.Error()
					return
				}
				for k, v := range cfg.headers {
					req.Header[k] = v
				}
				if cfg.body != "" {
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				}
				if cfg.basic != "" {
					req.Header.Set("Authorization", cfg.basic)
				}
				if len(bearer) > 0 {
					// A global cursor, so every token is used once per
					// cycle through the pool, whichever worker sends it.
					i := (cursor.Add(1) - 1) % uint64(len(bearer))
					req.Header.Set("Authorization", bearer[i])
				}
				if proof != "" {
					req.Header.Set("DPoP", proof)
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				lat := time.Since(t0)
				st.requests++
				st.hist[bucketOf(lat)]++
				switch {
				case err != nil:
					st.transport++
					if st.firstErr == "" {
						st.firstErr = err.Error()
					}
				case resp.StatusCode/100 != 2:
					st.status[resp.StatusCode]++
				}
			}
		}()
	}
	wg.Wait()
	res := result{elapsed: time.Since(start), status: map[int]int64{}}
	for _, st := range stats {
		res.requests += st.requests
		res.transErr += st.transport
		res.errors += st.transport
		for i, c := range st.hist {
			res.hist[i] += c
		}
		for code, c := range st.status {
			res.status[code] += c
			res.errors += c
		}
		if res.firstErr == "" {
			res.firstErr = st.firstErr
		}
	}
	return res
}

// checkBinding makes sure the token is bound as the mode asks, so that a
// figure measures the check it is named after: to the DPoP key with
// -dpop-proofs, to the client certificate with -cert.
func checkBinding(cfg config, tok string) error {
	wantJKT := cfg.dpop != nil
	wantX5t := cfg.tls != nil && len(cfg.tls.Certificates) > 0
	if !wantJKT && !wantX5t {
		return nil
	}
	c, err := claimsOf(tok)
	if err != nil {
		return fmt.Errorf("reading the token's cnf: %w", err)
	}
	if wantJKT && c.Cnf.JKT == "" {
		return errors.New("the token has no cnf.jkt: it is not DPoP-bound")
	}
	if wantX5t && c.Cnf.X5tS256 == "" {
		return errors.New("the token has no cnf.x5t#S256: it is not bound to the client certificate (does the token URL's site request client certificates?)")
	}
	return nil
}

func (r result) percentile(p float64) time.Duration {
	if r.requests == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p * float64(r.requests)))
	var seen uint64
	for b, c := range r.hist {
		seen += c
		if seen >= rank {
			return bucketUpper(b)
		}
	}
	return bucketUpper(histBuckets - 1)
}

func (r result) print(cfg config, tokens int) {
	rps := float64(r.requests) / r.elapsed.Seconds()
	p50, p99 := r.percentile(0.50), r.percentile(0.99)
	label := cfg.label
	if label == "" {
		label = cfg.method + " " + cfg.url
	}
	fmt.Printf("%s: %d requests in %.2fs with %d workers: %.0f req/s, p50 %s, p99 %s, errors %d\n",
		label, r.requests, r.elapsed.Seconds(), cfg.workers, rps, fmtDur(p50), fmtDur(p99), r.errors)
	if tokens > 0 {
		fmt.Printf("  %d distinct bearer tokens, each used about %.1f times\n", tokens, float64(r.requests)/float64(tokens))
	}
	if r.errors > 0 {
		codes := make([]int, 0, len(r.status))
		for c := range r.status {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		var parts []string
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%d×%d", r.status[c], c))
		}
		if r.transErr > 0 {
			parts = append(parts, fmt.Sprintf("%d transport errors (first: %s)", r.transErr, r.firstErr))
		}
		fmt.Printf("  errors: %s\n", strings.Join(parts, ", "))
	}
	fmt.Printf("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d errors=%d seconds=%.3f tokens=%d\n",
		rps, ms(p50), ms(p99), r.requests, r.errors, r.elapsed.Seconds(), tokens)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2fms", ms(d))
}
