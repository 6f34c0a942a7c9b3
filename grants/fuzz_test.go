package grants

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// Run a target with, for example:
//
//	go test ./grants -run '^$' -fuzz FuzzVerify -fuzztime 30s
//
// Plain `go test` runs the seed corpus of each target as a unit test.

func FuzzParseFormBody(f *testing.F) {
	for _, s := range []string{
		"", "=", "&", "&&", "==", "a", "a=", "=a",
		"grant_type=client_credentials",
		"grant_type=client_credentials&scope=read+write",
		"grant_type=client_credentials&grant_type=password",
		"grant_type=&scope=",
		"scope=&scope=",
		"foo=1&foo=2",
		"grant_type=%zz",
		"grant_type=%",
		"scope=%ff",
		"scope=%C0%AF",
		"grant%5Ftype=x",
		"a;b=c",
		"grant_type=client_credentials;scope=read",
		"client_id=%00",
		"resource=https%3A%2F%2Fapp.test&resource=",
		strings.Repeat("scope=a&", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		form, oerr := parseFormBody(body)
		if oerr != nil {
			if form != nil {
				t.Fatalf("form and error both returned")
			}
			if oerr.Code != CodeInvalidRequest || oerr.Status != 400 {
				t.Fatalf("error = %+v", oerr)
			}
			if !descRE.MatchString(oerr.Description) {
				t.Fatalf("description %q outside the TOK-12 set", oerr.Description)
			}
			return
		}
		values, err := url.ParseQuery(body)
		if err != nil {
			t.Fatalf("accepted a body url.ParseQuery refuses: %v", err)
		}
		for name, v := range form {
			if !knownParams[name] {
				t.Fatalf("unknown parameter %q kept", name)
			}
			if v == "" {
				t.Fatalf("parameter %q kept with an empty value", name)
			}
			if !utf8.ValidString(v) {
				t.Fatalf("parameter %q is not UTF-8", name)
			}
			if vs := values[name]; len(vs) != 1 || vs[0] != v {
				t.Fatalf("parameter %q = %q, but the body holds %q", name, v, vs)
			}
		}
		// Nothing known and non-empty was dropped.
		for name, vs := range values {
			if knownParams[name] && vs[0] != "" && form[name] != vs[0] {
				t.Fatalf("parameter %q dropped", name)
			}
		}
	})
}

func FuzzParseBasic(f *testing.F) {
	f.Add(basicAuth("c-basic", basicSecret), "c-basic", basicSecret)
	f.Add(rawBasic("c-basic", basicSecret), "a b", "x+y")
	f.Add("Basic", "", "")
	f.Add("Basic ", ":", ":")
	f.Add("basic "+b64(":"), "%", "%%")
	f.Add("Basic "+b64("a:b:c"), "ü", "\x00")
	f.Add("Basic "+b64("%zz:x"), "id", "")
	f.Add("Basic "+b64("a:%zz"), "", "secret")
	f.Add("Basic  "+b64("a:b"), "a", "b")
	f.Add("Bearer "+b64("a:b"), "\xff", "\xfe")
	f.Add("Basic "+b64("a:b")+"=", "a", "b")
	f.Add("Basic YTpi\r\n", "a", "b")
	f.Fuzz(func(t *testing.T, header, id, secret string) {
		gotID, gotSecret, ok := parseBasic(header)
		if ok && gotID == "" {
			t.Fatalf("ok with an empty id for %q", header)
		}
		if !ok && (gotID != "" || gotSecret != "") {
			t.Fatalf("credentials returned with ok=false for %q", header)
		}
		// Round trip: whatever we form-encode and base64, we read back.
		gotID, gotSecret, ok = parseBasic(basicAuth(id, secret))
		if ok != (id != "") {
			t.Fatalf("parseBasic(basicAuth(%q, %q)) ok = %v", id, secret, ok)
		}
		if ok && (gotID != id || gotSecret != secret) {
			t.Fatalf("round trip (%q, %q) -> (%q, %q)", id, secret, gotID, gotSecret)
		}
	})
}

func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"", " ", "read", "read write", "read  write", " read", "read ", "a\tb", `a"b`, `a\b`,
		"read read", "é", "\x7f", "!#[]~"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, oerr := parseScope(s)
		if oerr != nil {
			if oerr.Code != CodeInvalidScope {
				t.Fatalf("code = %s", oerr.Code)
			}
			return
		}
		if len(got) == 0 {
			t.Fatalf("parseScope(%q) accepted nothing", s)
		}
		for i, tok := range got {
			if !validScopeToken(tok) || slices.Contains(got[:i], tok) {
				t.Fatalf("parseScope(%q) = %q", s, got)
			}
		}
		// Accepted scopes are the single-space separated tokens of s, in
		// order, first occurrence kept.
		var want []string
		for _, p := range strings.Split(s, " ") {
			if !slices.Contains(want, p) {
				want = append(want, p)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("parseScope(%q) = %q, want %q", s, got, want)
		}
	})
}
