package postgres

import (
	"strings"
	"testing"
)

// TestParseDSNSaysWhy: each kind of bad DSN is refused with its cause
// named, and the password never appears, however the DSN is written.
func TestParseDSNSaysWhy(t *testing.T) {
	const pw = "hunter2-secret"
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://u:" + pw + "@db:5432/x?sslmode=bogus", "sslmode is invalid"},
		{"postgres://u:" + pw + "@db:5432/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", "unable to read CA file"},
		{"postgres://u:" + pw + "@db:notaport/x", "invalid port"},
		{"host=db port=99999999 user=u password=" + pw + " dbname=x", "invalid port"},
		{"host=db user=u password='" + pw + " dbname=x", "unterminated quoted string"},
		{"host=db user=u password=" + pw + " trailing dbname=x", `without "="`},
		{"postgres://u:" + pw + "%zz@db:5432/x", "percent-encoded"},
		{"postgres://u:" + pw + "@db:5432/x?connect_timeout=soon", "invalid connect_timeout"},
		// An '@' in the password: the rest of it would be taken for the
		// host and printed by the lookup error.
		{"postgres://u:ab@" + pw + "@db:5432/x", "percent-encode '@'"},
		{"postgres://u:ab/" + pw + "@db:5432/x", "percent-encode"},
	} {
		_, err := ParseDSN(tc.dsn)
		if err == nil {
			t.Errorf("%s: accepted", tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want its cause named", tc.want, err)
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error shows the password: %v", tc.want, err)
		}
	}
}
