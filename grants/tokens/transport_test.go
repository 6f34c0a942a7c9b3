package tokens

import "testing"

// isLoopbackAddr reads an address with or without a port, v4 or v6, and
// costs no allocation for the forms Caddy and net/http hand it.
func TestIsLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "127.0.0.1:80": true, "127.9.9.9": true, "::1": true, "[::1]": true, "[::1]:8443": true,
		"::ffff:127.0.0.1": true, "[::ffff:127.0.0.1]:1": true,
		"203.0.113.9": false, "203.0.113.9:80": false, "2001:db8::1": false, "[2001:db8::1]:80": false,
		"": false, "localhost": false, "localhost:80": false, "127.0.0.1:": false, "[::1": false, "1.2.3.4:5:6": false,
	} {
		if got := isLoopbackAddr(addr); got != want {
			t.Errorf("isLoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
	for _, addr := range []string{"127.0.0.1", "127.0.0.1:54321", "::1", "[::1]:54321", "203.0.113.9"} {
		if n := testing.AllocsPerRun(100, func() { isLoopbackAddr(addr) }); n != 0 {
			t.Errorf("isLoopbackAddr(%q) allocates %v times", addr, n)
		}
	}
}
