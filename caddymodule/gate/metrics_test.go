package gate

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// countGate counts each result in its own series of
// caddy_oauth_gate_decisions_total, also after its counter is kept.
func TestCountGate(t *testing.T) {
	for r := range gateResults {
		series := decisions.WithLabelValues(gateResultLabels[r])
		value := func() float64 {
			var m dto.Metric
			if err := series.Write(&m); err != nil {
				t.Fatal(err)
			}
			return m.GetCounter().GetValue()
		}
		before := value()
		countGate(r)
		countGate(r)
		if got := value(); got != before+2 {
			t.Errorf("%s: counted %v, want %v", gateResultLabels[r], got-before, 2)
		}
	}
}
