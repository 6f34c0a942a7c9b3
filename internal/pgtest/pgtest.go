// Package pgtest starts a real PostgreSQL from Debian's postgresql
// package for tests: initdb into a temporary directory as a non-root user
// (nobody, via runuser, when the tests run as root), listening on
// 127.0.0.1 at the first free port of a range the caller owns (registered
// in integration/main_test.go) and on a socket in its own directory. The
// package is installed with apt-get when missing. Nothing is skipped: a
// caller that cannot start the server fails its tests with the reason.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Server is one running PostgreSQL with its data in a temporary
// directory.
type Server struct {
	// Port is the TCP port on 127.0.0.1.
	Port int

	bin, dir, data string
	settings       []string // "-c" arguments, name=value
	dbs            atomic.Int64

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	logf   *os.File
	admin  *pgxpool.Pool
}

// Bin finds Debian's PostgreSQL binaries, installing the package when
// they are missing.
func Bin() (string, error) {
	find := func() string {
		m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
		if len(m) == 0 {
			return ""
		}
		return filepath.Dir(m[len(m)-1])
	}
	if dir := find(); dir != "" {
		return dir, nil
	}
	sudo := []string{}
	if os.Geteuid() != 0 {
		sudo = []string{"sudo"}
	}
	for _, args := range [][]string{{"apt-get", "update", "-qq"}, {"apt-get", "install", "-y", "-qq", "postgresql"}} {
		full := append(sudo, args...)
		cmd := exec.Command(full[0], full[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("installing postgresql (%s): %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	if dir := find(); dir != "" {
		return dir, nil
	}
	return "", errors.New("installed postgresql but found no /usr/lib/postgresql/*/bin/initdb")
}

// asUser runs a PostgreSQL binary as the unprivileged user (PostgreSQL
// refuses to run as root).
func asUser(bin string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "nobody", "--", bin}, args...)...)
	}
	return exec.Command(bin, args...)
}

// testSettings are the server settings Start uses unless told
// otherwise. fsync off: the tests check transactions, not the disk; the
// data directory is thrown away after.
var testSettings = []string{"max_connections=400", "fsync=off", "synchronous_commit=off", "full_page_writes=off"}

// Durable are the settings of a server that keeps every commit on disk
// before acknowledging it, as a real deployment does, for benchmarks of
// the durable paths: Start(lo, hi, pgtest.Durable...).
var Durable = []string{"fsync=on", "synchronous_commit=on", "full_page_writes=on"}

// Start initialises a data directory and starts PostgreSQL on the first
// free port of lo..hi. Each setting is name=value (a postgres -c
// argument) and replaces Start's own for that name; without any, the
// server runs with fsync, synchronous_commit and full_page_writes off.
func Start(lo, hi int, settings ...string) (*Server, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	merged, err := mergeSettings(testSettings, settings)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "oauthgate-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, data: filepath.Join(dir, "data"), settings: merged}
	fail := func(err error) (*Server, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return fail(fmt.Errorf("looking up user nobody to run PostgreSQL as: %w", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return fail(err)
		}
	}
	if out, err := asUser(filepath.Join(bin, "initdb"), "-D", s.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w\n%s", err, out))
	}
	for p := lo; p <= hi; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			_ = l.Close()
			s.Port = p
			break
		}
	}
	if s.Port == 0 {
		return fail(fmt.Errorf("no free port in 127.0.0.1:%d-%d", lo, hi))
	}
	if err := s.start(); err != nil {
		return fail(err)
	}
	return s, nil
}

// start runs postgres on the data directory and waits until it accepts
// connections.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	args := []string{"-D", s.data,
		"-c", "listen_addresses=127.0.0.1", "-c", "port=" + strconv.Itoa(s.Port),
		"-c", "unix_socket_directories=" + s.dir}
	for _, kv := range s.settings {
		args = append(args, "-c", kv)
	}
	cmd := asUser(filepath.Join(s.bin, "postgres"), args...)
	logf, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that stop reaches postgres under
	// runuser; Pdeathsig, so that a test binary killed before Stop (a
	// -timeout panic, a kill) does not leave the server running: runuser
	// passes the SIGTERM on, and postgres shuts down once its clients,
	// which died with the binary, are gone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("starting postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited, s.logf = cmd, exited, logf
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		pool, err := pgxpool.New(ctx, s.DSN("postgres"))
		if err == nil {
			err = pool.Ping(ctx)
		}
		cancel()
		if err == nil {
			s.admin = pool
			return nil
		}
		if pool != nil {
			pool.Close()
		}
		select {
		case <-exited:
			s.stopLocked()
			return fmt.Errorf("postgres exited: %s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			s.stopLocked()
			return fmt.Errorf("postgres did not accept connections in 30s: %v\n%s", err, s.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mergeSettings is base with each of over replacing base's setting of
// the same name, or appended. The server's own address, port and socket
// directory are not settings a caller may change.
func mergeSettings(base, over []string) ([]string, error) {
	out := slices.Clone(base)
	for _, kv := range over {
		name, _, ok := strings.Cut(kv, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("pgtest: setting %q is not name=value", kv)
		}
		switch name {
		case "listen_addresses", "port", "unix_socket_directories":
			return nil, fmt.Errorf("pgtest: setting %s is chosen by Start", name)
		}
		i := slices.IndexFunc(out, func(have string) bool {
			n, _, _ := strings.Cut(have, "=")
			return n == name
		})
		if i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out, nil
}

// Settings are the server's -c settings (name=value), Start's defaults
// with the caller's replacing them.
func (s *Server) Settings() []string { return slices.Clone(s.settings) }

// stopLocked shuts the server down (fast shutdown: rolls back, closes
// sessions) and waits for it.
func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	if s.admin != nil {
		s.admin.Close()
		s.admin = nil
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	_ = s.logf.Close()
	s.cmd = nil
}

// Down stops the server and keeps its data, for Up to start it again on
// the same port: a database restart as clients see it.
func (s *Server) Down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Up starts a server Down stopped.
func (s *Server) Up() error { return s.start() }

// Stop stops the server and removes its data.
func (s *Server) Stop() {
	s.Down()
	_ = os.RemoveAll(s.dir)
}

// Log is the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
	return string(b)
}

// DSN is the URL of database db as the superuser, over TCP.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// Admin is a pool on the postgres database as the superuser.
func (s *Server) Admin() *pgxpool.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.admin
}

// NewDatabase creates an empty database and returns its DSN.
func (s *Server) NewDatabase() (string, error) {
	name := fmt.Sprintf("t%d", s.dbs.Add(1))
	if _, err := s.Admin().Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("CREATE DATABASE %s: %w", name, err)
	}
	return s.DSN(name), nil
}
