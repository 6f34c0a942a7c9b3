package caddymodule

import (
	"errors"
	"sync"
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
	tokenDuration prometheus.Histogram
	signIns       *prometheus.CounterVec
	refreshReuse  prometheus.Counter
	adminChanges  *prometheus.CounterVec
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
		oauthMetrics.tokenDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "token_request_duration_seconds", Help: "Time the token endpoint took to answer.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}})
		oauthMetrics.signIns = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "signins_total", Help: "Password sign-ins (login page and password grant), by result: success, failure, locked."},
			[]string{"result"})
		oauthMetrics.refreshReuse = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "refresh_token_reuse_total", Help: "Rotated refresh tokens presented again; each revoked its grant."})
		oauthMetrics.adminChanges = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "admin_changes_total", Help: "Changes made by operators, by kind (user, client, key, grants) and action."},
			[]string{"kind", "action"})
	})
}

// registerMetrics registers the collectors with a config's registry.
func registerMetrics(reg *prometheus.Registry) error {
	initMetrics()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{oauthMetrics.issued, oauthMetrics.errors, oauthMetrics.tokenDuration,
		oauthMetrics.signIns, oauthMetrics.refreshReuse, oauthMetrics.adminChanges} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
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

func (metricsObserver) SignIn(result string) { oauthMetrics.signIns.WithLabelValues(result).Inc() }

func (metricsObserver) RefreshReuse() { oauthMetrics.refreshReuse.Inc() }

func (metricsObserver) AdminChange(kind, action string) {
	oauthMetrics.adminChanges.WithLabelValues(kind, action).Inc()
}

var _ grants.Observer = metricsObserver{}
