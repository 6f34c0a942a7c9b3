package caddymodule

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5"

	"github.com/oauthgate/caddy-oauthgate/storage/postgres"
)

// TestPostgresStorageProvision: the options reach the pool configuration
// without connecting, and every mistake is an error that says what to
// fix and never repeats the password.
func TestPostgresStorageProvision(t *testing.T) {
	t.Setenv("OAUTH_KEK", "")
	os.Unsetenv("OAUTH_KEK")
	t.Setenv("PGTEST_DSN", "postgres://oauth:s3cret-pw@db.internal:6543/oauth")
	kek := `"key_encryption_key":"0123456789abcdef0123456789abcdef",`
	app, err := provisionJSON(t, `{"issuer":"https://as.test",`+kek+`"storage":{"module":"postgres","dsn":"{env.PGTEST_DSN}","max_conns":7,"statement_timeout":"2s","connect_timeout":"3s"}}`)
	if err != nil {
		t.Fatal(err)
	}
	p := app.store.(*PostgresStorage)
	if p.pool.MaxConns != 7 || p.pool.ConnConfig.RuntimeParams["statement_timeout"] != "2000" || p.pool.ConnConfig.ConnectTimeout.Seconds() != 3 {
		t.Errorf("pool config: max %d, statement_timeout %q, connect %v", p.pool.MaxConns, p.pool.ConnConfig.RuntimeParams["statement_timeout"], p.pool.ConnConfig.ConnectTimeout)
	}
	if name := p.StoreName(); name != "postgres db.internal:6543/oauth" {
		t.Errorf("StoreName %q", name)
	}
	if !isShared(app.store) {
		t.Error("postgres storage is not shared")
	}

	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ storage, want string }{
		{`{"module":"postgres"}`, "dsn is required"},
		{`{"module":"postgres","dsn":"{env.PGTEST_NOSUCH}"}`, "is empty after replacing placeholders"},
		{`{"module":"postgres","dsn":"postgres://oauth:s3cret-pw@db:5432/oauth?sslmode=bogus"}`, "not a valid PostgreSQL connection string (postgres://user:password@host:5432/dbname or key=value pairs): failed to configure TLS: sslmode is invalid"},
		{`{"module":"postgres","dsn":"postgres://oauth:s3cret-pw%zz@db:5432/oauth"}`, "percent-encoded"},
		{`{"module":"postgres","dsn":"postgres://oauth:s3cret-pw@db:5432"}`, "names no database"},
		{`{"module":"postgres","dsn":"{env.PGTEST_DSN}","tls_cert":"/c.pem"}`, "tls_cert and tls_key go together"},
		{`{"module":"postgres","dsn":"{env.PGTEST_DSN}","tls_cert":"/c.pem","tls_key":"/k.pem"}`, "tls_cert needs tls_ca"},
		{`{"module":"postgres","dsn":"{env.PGTEST_DSN}","tls_ca":"` + notPEM + `"}`, "holds no PEM certificate"},
		{`{"module":"postgres","dsn":"{env.PGTEST_DSN}","max_conns":-1}`, "cannot be negative"},
	} {
		_, err := provisionJSON(t, `{"issuer":"https://as.test",`+kek+`"storage":`+tc.storage+`}`)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.storage, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("%s: the error shows the password: %v", tc.storage, err)
		}
	}

	// Shared data: the signing keys must be encrypted.
	_, err = provisionJSON(t, `{"issuer":"https://as.test","storage":{"module":"postgres","dsn":"{env.PGTEST_DSN}"}}`)
	if err == nil || !strings.Contains(err.Error(), "must be encrypted: set key_encryption_key") || strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("postgres without key_encryption_key: %v", err)
	}
}

// TestPostgresStorageTLS: tls_ca makes the connection verify the server
// by name, with no plain-text fallback.
func TestPostgresStorageTLS(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, testCAPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &PostgresStorage{DSN: "postgres://u@db.internal/oauth?sslmode=prefer", TLSCA: ca}
	if err := p.Provision(caddyCtx(t)); err != nil {
		t.Fatal(err)
	}
	cfg := p.pool.ConnConfig.TLSConfig
	if cfg == nil || cfg.ServerName != "db.internal" || cfg.InsecureSkipVerify || cfg.RootCAs == nil || cfg.MinVersion < tls.VersionTLS12 {
		t.Errorf("TLS config %+v", cfg)
	}
	if len(p.pool.ConnConfig.Fallbacks) != 0 {
		t.Errorf("%d fallbacks remain (sslmode=prefer's plain text)", len(p.pool.ConnConfig.Fallbacks))
	}
}

func caddyCtx(t *testing.T) caddy.Context {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

// testCAPEM is a self-signed CA certificate in PEM.
func testCAPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test db CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestPostgresDamagedSchemaStopsStart: a node does not start on a
// database whose records table lost its primary key (every write would
// fail): the start fails naming the fault and what to do.
func TestPostgresDamagedSchemaStopsStart(t *testing.T) {
	dsn := postgresDSN(t)
	t.Setenv("PGDAMAGE_DSN", dsn)
	cfg := `{"issuer":"https://as.test","key_encryption_key":"0123456789abcdef0123456789abcdef","storage":{"module":"postgres","dsn":"{env.PGDAMAGE_DSN}"}}`
	first, err := provisionJSON(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.ready(); err != nil {
		t.Fatal(err)
	}
	first.Cleanup() // the store closes with its last user

	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "ALTER TABLE oauthgate_records DROP CONSTRAINT oauthgate_records_pkey"); err != nil {
		t.Fatal(err)
	}
	second, err := provisionJSON(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Cleanup()
	_, err = second.ready()
	if !errors.Is(err, postgres.ErrSchemaDamaged) || !strings.Contains(err.Error(), "primary key") || !strings.Contains(err.Error(), "pg_dump") {
		t.Errorf("start on a damaged schema: %v; want ErrSchemaDamaged naming the primary key and what to do", err)
	}
}
