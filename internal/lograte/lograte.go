// Package lograte keeps a failure that repeats on every request from
// flooding the log: a full disk under load fails thousands of requests a
// second, and one line a second with a count says as much as all of them.
package lograte

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Interval is how often a Limiter lets the same line through.
const Interval = time.Second

// maxKeys bounds the distinct lines a Limiter remembers, so that causes
// with varying text cannot grow it without end.
const maxKeys = 256

// Limiter writes at most one line per Interval for each distinct key,
// and adds to the next line it writes for that key how many it held back
// ("suppressed"). The zero value is not usable; use New.
type Limiter struct {
	logger *zap.Logger
	now    func() time.Time

	mu   sync.Mutex
	seen map[string]*line
}

type line struct {
	at         time.Time
	suppressed int
}

// New returns a Limiter that writes to logger (nil for none).
func New(logger *zap.Logger) *Limiter {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Limiter{logger: logger, now: time.Now, seen: map[string]*line{}}
}

// Error writes msg at ERROR with fields, unless a line with the same key
// went out less than Interval ago. The key is what makes a line news to
// the operator: the message, and the cause's text (a new cause is worth
// a line at once; the same one a thousand times a second is not).
func (l *Limiter) Error(key, msg string, fields ...zap.Field) {
	ce := l.logger.Check(zapcore.ErrorLevel, msg)
	if ce == nil {
		return
	}
	n, ok := l.allow(key)
	if !ok {
		return
	}
	if n > 0 {
		fields = append(fields, zap.Int("suppressed", n))
	}
	ce.Write(fields...)
}

// allow reports whether the line keyed key may be written now and how
// many were held back since the last one.
func (l *Limiter) allow(key string) (suppressed int, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, found := l.seen[key]; found {
		if now.Sub(s.at) < Interval {
			s.suppressed++
			return 0, false
		}
		n := s.suppressed
		s.at, s.suppressed = now, 0
		return n, true
	}
	if len(l.seen) >= maxKeys {
		// Forget the keys whose last line is older than Interval (a
		// count held back for them is dropped); if every key is recent,
		// this many distinct failures a second are a flood of their
		// own, and the new one is dropped too.
		for k, s := range l.seen {
			if now.Sub(s.at) >= Interval {
				delete(l.seen, k)
			}
		}
		if len(l.seen) >= maxKeys {
			return 0, false
		}
	}
	l.seen[key] = &line{at: now}
	return 0, true
}
