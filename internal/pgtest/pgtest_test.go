package pgtest

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// The servers here take the first free ports of 19390-19394 (registered
// in integration/main_test.go, shared with bench/micro's PostgreSQL).

func show(t *testing.T, s *Server, name string) string {
	t.Helper()
	var v string
	if err := s.Admin().QueryRow(context.Background(), "SHOW "+name).Scan(&v); err != nil {
		t.Fatalf("SHOW %s: %v", name, err)
	}
	return v
}

// TestStartSettings: without settings the server runs as the tests have
// always had it (fsync off); with Durable it keeps commits on disk, and
// says so in Settings.
func TestStartSettings(t *testing.T) {
	plain, err := Start(19390, 19394)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Stop()
	durable, err := Start(19390, 19394, Durable...)
	if err != nil {
		t.Fatal(err)
	}
	defer durable.Stop()
	for name, want := range map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "400"} {
		if got := show(t, plain, name); got != want {
			t.Errorf("default server: %s = %s, want %s", name, got, want)
		}
	}
	for name, want := range map[string]string{"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "max_connections": "400"} {
		if got := show(t, durable, name); got != want {
			t.Errorf("durable server: %s = %s, want %s", name, got, want)
		}
	}
	if !slices.Contains(durable.Settings(), "fsync=on") || slices.Contains(durable.Settings(), "fsync=off") {
		t.Errorf("durable Settings() = %v", durable.Settings())
	}
	// Up after Down keeps the settings.
	durable.Down()
	if err := durable.Up(); err != nil {
		t.Fatal(err)
	}
	if got := show(t, durable, "fsync"); got != "on" {
		t.Errorf("durable server after Down/Up: fsync = %s", got)
	}
}

func TestStartRejectsBadSettings(t *testing.T) {
	for _, bad := range []string{"fsync", "=on", "port=5432", "listen_addresses=*"} {
		s, err := Start(19390, 19394, bad)
		if err == nil {
			s.Stop()
			t.Errorf("Start with setting %q: no error", bad)
		} else if !strings.Contains(err.Error(), "pgtest: setting") {
			t.Errorf("Start with setting %q: %v", bad, err)
		}
	}
}
