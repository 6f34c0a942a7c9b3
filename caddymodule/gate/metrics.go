package gate

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// decisions counts the gate's decisions by result. It is built once and
// registered with the metrics registry of every config that uses it (a
// registry is new per config).
var decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "caddy", Subsystem: "oauth",
	Name: "gate_decisions_total", Help: "Decisions of oauth_protect, by result."},
	[]string{"result"})

var registerOnce sync.Mutex

// registerMetrics registers the collector with a config's registry.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	registerOnce.Lock()
	defer registerOnce.Unlock()
	if err := reg.Register(decisions); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			return err
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
	gateForbidden
	gateLogin
	gateResults // how many there are
)

// gateResultLabels are the values of the result label.
var gateResultLabels = [gateResults]string{
	gateAllowed: "allowed", gateNoToken: "no_token", gateBadRequest: "invalid_request", gateInvalid: "invalid_token",
	gateScope: "insufficient_scope", gatePreflight: "preflight", gateUnavailable: "unavailable",
	gateForbidden: "forbidden", gateLogin: "login_redirect",
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
		counter := decisions.WithLabelValues(gateResultLabels[r])
		c = &counter
		gateCounters[r].Store(c)
	}
	(*c).Inc()
}
