package caddymodule

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oauthgate/caddy-oauthgate/grants"
)

// oauthMetrics are built once and registered with the metrics registry
// of every config that uses them (a registry is new per config).
var oauthMetrics = struct {
	once          sync.Once
	issued        *prometheus.CounterVec
	errors        *prometheus.CounterVec
	gate          *prometheus.CounterVec
	tokenDuration prometheus.Histogram
}{}

func init() { initMetrics() }

func initMetrics() {
	const ns, sub = "caddy", "oauth"
	oauthMetrics.once.Do(func() {
		oauthMetrics.issued = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "tokens_issued_total", Help: "Tokens issued by the token endpoint, by grant type and client."},
			[]string{"grant_type", "client_id"})
		oauthMetrics.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "token_errors_total", Help: "Error responses of the token endpoint, by error code."},
			[]string{"error"})
		oauthMetrics.gate = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "gate_decisions_total", Help: "Decisions of oauth_protect, by result."},
			[]string{"result"})
		oauthMetrics.tokenDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "token_request_duration_seconds", Help: "Time the token endpoint took to answer.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}})
	})
}

// registerMetrics registers the collectors with a config's registry.
func registerMetrics(reg *prometheus.Registry) error {
	initMetrics()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{oauthMetrics.issued, oauthMetrics.errors, oauthMetrics.gate, oauthMetrics.tokenDuration} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// gateResult is a decision of oauth_protect, counted by result.
type gateResult int

// Gate decision results.
const (
	gateAllowed gateResult = iota
	gateNoToken
	gateBadRequest
	gateInvalid
	gateScope
	gatePreflight
	gateUnavailable
	gateResults // how many there are
)

// gateResultLabels are the values of the result label.
var gateResultLabels = [gateResults]string{
	gateAllowed: "allowed", gateNoToken: "no_token", gateBadRequest: "invalid_request", gateInvalid: "invalid_token",
	gateScope: "insufficient_scope", gatePreflight: "preflight", gateUnavailable: "unavailable",
}

// gateCounters hold each result's counter once it has been counted:
// WithLabelValues hashes and looks the label up on every call, a
// quarter of the gate's own time per request. The vector is never
// reset, so a counter stays its series; a result never counted has no
// series, as before.
var gateCounters [gateResults]atomic.Pointer[prometheus.Counter]

func countGate(r gateResult) {
	c := gateCounters[r].Load()
	if c == nil {
		counter := oauthMetrics.gate.WithLabelValues(gateResultLabels[r])
		c = &counter
		gateCounters[r].Store(c)
	}
	(*c).Inc()
}

// metricsObserver feeds the token endpoint's events to the collectors.
type metricsObserver struct{}

func (metricsObserver) TokenIssued(grantType, clientID string) {
	oauthMetrics.issued.WithLabelValues(grantType, clientID).Inc()
}

func (metricsObserver) TokenRefused(code string) { oauthMetrics.errors.WithLabelValues(code).Inc() }

func (metricsObserver) TokenDuration(d time.Duration) {
	oauthMetrics.tokenDuration.Observe(d.Seconds())
}

var _ grants.Observer = metricsObserver{}
