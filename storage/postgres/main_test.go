package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The tests run against a real PostgreSQL from Debian's postgresql
// package, started by TestMain in a temporary directory and stopped
// after: initdb as a non-root user (nobody, via runuser, when the tests
// run as root), listening on 127.0.0.1 at the first free port of
// 19350-19359 (registered in integration/main_test.go) and on a socket
// in its own directory. If it cannot start, every test fails with the
// reason: nothing is skipped.
var (
	pgPort    int
	pgErr     error // why PostgreSQL did not start
	dbCounter atomic.Int64
	admin     *pgxpool.Pool
)

func TestMain(m *testing.M) {
	stop, err := startPostgres()
	if err != nil {
		pgErr = err
		fmt.Fprintln(os.Stderr, "postgres storage tests: PostgreSQL did not start:", err)
	}
	code := m.Run()
	if stop != nil {
		stop()
	}
	os.Exit(code)
}

// pgBin finds Debian's PostgreSQL binaries, installing the package when
// they are missing.
func pgBin() (string, error) {
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
		cmd := exec.Command(append(sudo, args...)[0], append(sudo, args...)[1:]...)
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

func startPostgres() (stop func(), err error) {
	bin, err := pgBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "oauthgate-pg-")
	if err != nil {
		return nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("looking up user nobody to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			cleanup()
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := asUser(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		cleanup()
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	for p := 19350; p <= 19359; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			_ = l.Close()
			pgPort = p
			break
		}
	}
	if pgPort == 0 {
		cleanup()
		return nil, errors.New("no free port in 127.0.0.1:19350-19359")
	}
	// fsync off: the tests check transactions, not the disk; the data
	// directory is thrown away after.
	cmd := asUser(filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(pgPort),
		"-c", "unix_socket_directories="+dir, "-c", "max_connections=300",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		cleanup()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that stop reaches postgres under
	// runuser; Pdeathsig, so that a test binary killed before stop (a
	// -timeout panic, a kill) does not leave the server running: runuser
	// passes the SIGTERM on, and postgres shuts down once its clients,
	// which died with the binary, are gone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		cleanup()
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop = func() {
		if admin != nil {
			admin.Close()
		}
		// SIGINT: PostgreSQL's fast shutdown (rolls back, closes sessions).
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		_ = logf.Close()
		cleanup()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		pool, err := pgxpool.New(ctx, adminDSN("postgres"))
		if err == nil {
			err = pool.Ping(ctx)
		}
		cancel()
		if err == nil {
			admin = pool
			return stop, nil
		}
		if pool != nil {
			pool.Close()
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			stop()
			return nil, fmt.Errorf("postgres exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			stop()
			return nil, fmt.Errorf("postgres did not accept connections in 30s: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func adminDSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pgPort, db)
}

// newDatabase creates an empty database of the test's own and returns
// its DSN.
func newDatabase(t *testing.T) string {
	t.Helper()
	if pgErr != nil {
		t.Fatalf("PostgreSQL did not start: %v", pgErr)
	}
	name := fmt.Sprintf("t%d", dbCounter.Add(1))
	if _, err := admin.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("CREATE DATABASE %s: %v", name, err)
	}
	return adminDSN(name)
}

// openStore opens a store on a new database and closes it when the test
// ends.
func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := OpenDSN(context.Background(), newDatabase(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
