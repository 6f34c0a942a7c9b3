package caddymodule

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/postgres"
)

func init() {
	caddy.RegisterModule(PostgresStorage{})
}

// PostgresStorage is the oauth.storage.postgres module: every record in
// one PostgreSQL database (or an engine that speaks its protocol), so
// that several Caddy nodes issue, rotate and revoke against the same
// grants. The schema is created and upgraded when the first node starts.
//
// In the Caddyfile:
//
//	storage postgres {
//		dsn {env.OAUTH_PG_DSN}
//		max_conns 20
//		statement_timeout 5s
//		tx_timeout 30s
//		tls_ca /etc/ssl/db-ca.pem
//	}
type PostgresStorage struct {
	// DSN is the connection string: a URL such as
	// `postgres://oauth:secret@db.internal:5432/oauth?sslmode=verify-full`
	// or `host=… dbname=… user=…` pairs, as libpq and pgx read them
	// (sslmode, sslrootcert, sslcert, sslkey and connect_timeout work
	// there too). Placeholders such as `{env.OAUTH_PG_DSN}` or
	// `{file./run/secrets/dsn}` are replaced when the config loads, so
	// the password stays out of the JSON. Required.
	DSN string `json:"dsn,omitempty"`

	// MaxConns is the size of each of the two connection pools a node
	// keeps (one for reads, one for writes): budget twice this per node,
	// plus two (the short-lived connections of the sweep and key
	// rotation locks), against the server's max_connections. Default:
	// pgx's, the larger of 4 and the number of CPUs.
	MaxConns int32 `json:"max_conns,omitempty"`

	// StatementTimeout stops any one statement that runs longer, on the
	// server (PostgreSQL's statement_timeout). Default: the server's.
	StatementTimeout caddy.Duration `json:"statement_timeout,omitempty"`

	// TxTimeout bounds one transaction from BEGIN to COMMIT, including
	// its retries' statements, and, apart, the wait for a connection (a
	// database that stops answering fails requests within about this
	// long instead of holding them). Default: 30s.
	TxTimeout caddy.Duration `json:"tx_timeout,omitempty"`

	// ConnectTimeout bounds one connection attempt. Default: 10s.
	ConnectTimeout caddy.Duration `json:"connect_timeout,omitempty"`

	// TLSCA is a PEM file of the certificate authorities that sign the
	// database server's certificate. With it, the connection must use
	// TLS and the server's certificate must name the DSN's host
	// (libpq's sslmode=verify-full), whatever the DSN's sslmode says.
	TLSCA string `json:"tls_ca,omitempty"`

	// TLSCert and TLSKey are a PEM client certificate and its key, for a
	// server that authenticates clients by certificate. Both or neither;
	// they need TLSCA.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`

	dsn  string // DSN after placeholders
	name string // host:port/database, for logs
	pool *pgxpool.Config
}

// CaddyModule returns the Caddy module information.
func (PostgresStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  storageNamespace + ".postgres",
		New: func() caddy.Module { return new(PostgresStorage) },
	}
}

// Provision reads the DSN and the options into a pool configuration; it
// does not connect.
func (p *PostgresStorage) Provision(caddy.Context) error {
	repl := caddy.NewReplacer()
	p.dsn = repl.ReplaceKnown(p.DSN, "")
	if p.DSN == "" {
		return errors.New("storage postgres: dsn is required, for example: dsn {env.OAUTH_PG_DSN} with OAUTH_PG_DSN=postgres://oauth:secret@db:5432/oauth")
	}
	if p.dsn == "" {
		return fmt.Errorf("storage postgres: dsn %q is empty after replacing placeholders (is the environment variable set?)", p.DSN)
	}
	pc, err := postgres.ParseDSN(p.dsn)
	if err != nil {
		// Its message never repeats the DSN (it may hold the password).
		return fmt.Errorf("storage postgres: %w", err)
	}
	cc := pc.ConnConfig
	if cc.Database == "" {
		return errors.New("storage postgres: dsn names no database; add it, as in postgres://user:password@host:5432/dbname")
	}
	p.name = net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))) + "/" + cc.Database
	if p.MaxConns < 0 || p.StatementTimeout < 0 || p.TxTimeout < 0 || p.ConnectTimeout < 0 {
		return errors.New("storage postgres: max_conns and the timeouts cannot be negative")
	}
	if p.MaxConns > 0 {
		pc.MaxConns = p.MaxConns
	}
	if p.StatementTimeout > 0 {
		if cc.RuntimeParams == nil {
			cc.RuntimeParams = map[string]string{}
		}
		cc.RuntimeParams["statement_timeout"] = strconv.FormatInt(max(time.Duration(p.StatementTimeout).Milliseconds(), 1), 10)
	}
	if p.ConnectTimeout > 0 {
		cc.ConnectTimeout = time.Duration(p.ConnectTimeout)
	}
	if err := p.provisionTLS(pc); err != nil {
		return err
	}
	p.pool = pc
	return nil
}

// provisionTLS makes the connection verify the server with tls_ca (and
// present tls_cert), replacing what the DSN's sslmode set up.
func (p *PostgresStorage) provisionTLS(pc *pgxpool.Config) error {
	if (p.TLSCert == "") != (p.TLSKey == "") {
		return errors.New("storage postgres: tls_cert and tls_key go together; give both or neither")
	}
	if p.TLSCA == "" {
		if p.TLSCert != "" {
			return errors.New("storage postgres: tls_cert needs tls_ca, the authorities that sign the server's certificate")
		}
		return nil
	}
	pem, err := os.ReadFile(p.TLSCA)
	if err != nil {
		return fmt.Errorf("storage postgres: tls_ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("storage postgres: tls_ca %s holds no PEM certificate", p.TLSCA)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: pc.ConnConfig.Host, MinVersion: tls.VersionTLS12}
	if p.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(p.TLSCert, p.TLSKey)
		if err != nil {
			return fmt.Errorf("storage postgres: tls_cert/tls_key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	pc.ConnConfig.TLSConfig = cfg
	// No plain-text fallback (sslmode=prefer adds one).
	pc.ConnConfig.Fallbacks = nil
	return nil
}

// StoreKey is "postgres:" and the DSN with the options: a reload that
// changes the pool's settings opens a new pool (PostgreSQL, unlike a
// bbolt file, takes several at once) and the old one closes with the old
// config.
func (p *PostgresStorage) StoreKey() string {
	opts, _ := json.Marshal([]any{p.MaxConns, p.StatementTimeout, p.TxTimeout, p.ConnectTimeout, p.TLSCA, p.TLSCert, p.TLSKey})
	return "postgres:" + p.dsn + "\x00" + string(opts)
}

// StoreName is host:port/database, without the user or password.
func (p *PostgresStorage) StoreName() string { return "postgres " + p.name }

// Shared reports that other nodes use the same data: the signing keys
// must be encrypted (key_encryption_key) and housekeeping runs once per
// cluster.
func (p *PostgresStorage) Shared() bool { return true }

// OpenStore connects, creating or upgrading the schema.
func (p *PostgresStorage) OpenStore() (storage.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := postgres.Open(ctx, postgres.Config{Pool: p.pool, TxTimeout: time.Duration(p.TxTimeout),
		Logger: caddy.Log().Named("oauth.storage.postgres")})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", p.StoreName(), err)
	}
	return st, nil
}

// UnmarshalCaddyfile reads `storage postgres [<dsn>] { … }`; the
// dispenser is on the module name.
func (p *PostgresStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		p.DSN = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if !d.NextArg() {
			return d.Errf("storage postgres: %s needs a value", opt)
		}
		val := d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		switch opt {
		case "dsn":
			if p.DSN != "" {
				return d.Err("storage postgres: the dsn is given twice")
			}
			p.DSN = val
		case "max_conns":
			n, err := strconv.ParseInt(val, 10, 32)
			if err != nil || n < 1 {
				return d.Errf("storage postgres: max_conns %q is not a positive number", val)
			}
			p.MaxConns = int32(n)
		case "statement_timeout", "tx_timeout", "connect_timeout":
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("storage postgres: %s %q is not a positive duration such as 5s", opt, val)
			}
			switch opt {
			case "statement_timeout":
				p.StatementTimeout = caddy.Duration(dur)
			case "tx_timeout":
				p.TxTimeout = caddy.Duration(dur)
			default:
				p.ConnectTimeout = caddy.Duration(dur)
			}
		case "tls_ca":
			p.TLSCA = val
		case "tls_cert":
			p.TLSCert = val
		case "tls_key":
			p.TLSKey = val
		default:
			return d.Errf("unknown option %q in storage postgres (it takes: dsn, max_conns, statement_timeout, tx_timeout, connect_timeout, tls_ca, tls_cert, tls_key)", opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ StoreOpener           = (*PostgresStorage)(nil)
	_ SharedStore           = (*PostgresStorage)(nil)
	_ caddy.Provisioner     = (*PostgresStorage)(nil)
	_ caddyfile.Unmarshaler = (*PostgresStorage)(nil)
)
