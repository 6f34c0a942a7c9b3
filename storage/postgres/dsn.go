package postgres

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ParseDSN is pgxpool.ParseConfig with an error that says what is wrong
// with the connection string and never repeats it: pgx's own message
// quotes the string with the password masked on a best-effort basis
// only, and the URL parser's errors quote it whole.
func ParseDSN(dsn string) (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("the DSN is not a valid PostgreSQL connection string (postgres://user:password@host:5432/dbname or key=value pairs): %s%s", dsnFault(dsn, err), encodingHint(dsn))
	}
	// A URL whose password holds '@' parses, with the rest of the
	// password taken for the host: it would fail later with a lookup
	// error that prints that part of the password as a host name.
	hosts := []string{pc.ConnConfig.Host}
	for _, fb := range pc.ConnConfig.Fallbacks {
		hosts = append(hosts, fb.Host)
	}
	for _, h := range hosts {
		if strings.Contains(h, "@") {
			return nil, errors.New("the DSN's host name contains '@'" + encodingHint(dsn))
		}
	}
	return pc, nil
}

// encodingHint reminds a URL DSN's author that its user name and password
// are percent-encoded.
func encodingHint(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return " (in a postgres:// URL, percent-encode '@', ':', '/', '?' and '#' in the user name or password: '@' as %40, ':' as %3A, '/' as %2F, '?' as %3F, '#' as %23)"
	}
	return ""
}

// dsnFault says what pgx found wrong with dsn. It keeps only what is
// known not to hold the connection string: pgx's message part (a fixed
// text or a setting name from pgx v5's config.go, never the string or
// the password), and a wrapped error from a known source, or one that
// quotes none of the DSN's secrets.
func dsnFault(dsn string, err error) string {
	var pce *pgconn.ParseConfigError
	if !errors.As(err, &pce) {
		return "unreadable"
	}
	// The message part: Error() without the quoted string (emptied on a
	// copy) and without the wrapped error.
	bare := *pce
	bare.ConnString = ""
	msg := strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
	inner := pce.Unwrap()
	if inner != nil {
		msg = strings.TrimSuffix(msg, " ("+inner.Error()+")")
	}
	if inner != nil {
		if why := innerFault(inner); why != "" {
			msg += ": " + why
		}
	}
	if leaks(dsn, msg) {
		return "unreadable"
	}
	return msg
}

// innerFault describes an error wrapped in a ParseConfigError, or is ""
// when it may quote the DSN.
func innerFault(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // ue.Error() quotes the whole URL
	}
	var esc url.EscapeError
	var host url.InvalidHostError
	switch msg := err.Error(); {
	case errors.As(err, &esc):
		return "a bad %-escape (write a % in the password or elsewhere as %25)"
	case errors.As(err, &host):
		return "an invalid character in the host"
	case strings.Contains(msg, "invalid port"):
		return "invalid port (a number from 1 to 65535 after the host's colon)"
	case strings.HasPrefix(msg, `missing "=" after`):
		// It quotes the word, which may be part of a password.
		return `a word without "=" (quote a value with spaces in single quotes: password='a b')`
	case ue != nil:
		return "" // other URL errors quote a part of it
	default:
		return msg
	}
}

// leaks reports whether text holds the DSN or what looks like its
// password, whichever way the DSN is written.
func leaks(dsn, text string) bool {
	if strings.Contains(text, dsn) {
		return true
	}
	for _, pw := range passwordCandidates(dsn) {
		if len(pw) >= 3 && strings.Contains(text, pw) {
			return true
		}
	}
	return false
}

// passwordCandidates are the strings of dsn that may be a password: the
// URL's user-info after the first colon, and the value after password=.
func passwordCandidates(dsn string) []string {
	var out []string
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if c := strings.Index(rest[:at], ":"); c >= 0 {
				pw := rest[c+1 : at]
				out = append(out, pw)
				if u, err := url.PathUnescape(pw); err == nil {
					out = append(out, u)
				}
			}
		}
	}
	for _, key := range []string{"password=", "sslpassword="} {
		for s := dsn; ; {
			i := strings.Index(s, key)
			if i < 0 {
				break
			}
			s = s[i+len(key):]
			v := strings.TrimPrefix(s, "'")
			if j := strings.IndexAny(v, " '&"); j >= 0 {
				v = v[:j]
			}
			out = append(out, v)
		}
	}
	return out
}
