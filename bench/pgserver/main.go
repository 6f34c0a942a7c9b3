// Command pgserver runs a throw-away PostgreSQL for bench/nodes.sh: it
// starts one with internal/pgtest (Debian's postgresql package, installed
// when missing; data in a temporary directory) on 127.0.0.1 at -port,
// with fsync, synchronous_commit and full_page_writes on unless -fsync=false,
// creates an empty database, prints its DSN as one line
//
//	DSN=postgres://postgres@127.0.0.1:18099/t1?sslmode=disable
//
// and then runs until SIGINT or SIGTERM, or until its standard input
// closes, when it stops PostgreSQL and removes the data.
//
//	go run ./bench/pgserver -port 18099
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/oauthgate/caddy-oauthgate/internal/pgtest"
)

func main() {
	port := flag.Int("port", 18099, "TCP port on 127.0.0.1")
	fsync := flag.Bool("fsync", true, "keep every commit on disk before acknowledging it (fsync, synchronous_commit, full_page_writes on), as a real deployment does")
	flag.Parse()
	var settings []string
	if *fsync {
		settings = pgtest.Durable
	}
	srv, err := pgtest.Start(*port, *port, settings...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgserver:", err)
		os.Exit(1)
	}
	dsn, err := srv.NewDatabase()
	if err != nil {
		srv.Stop()
		fmt.Fprintln(os.Stderr, "pgserver:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "pgserver: PostgreSQL on 127.0.0.1:%d, settings %s\n", srv.Port, strings.Join(srv.Settings(), " "))
	fmt.Printf("DSN=%s\n", dsn)
	done := make(chan struct{}, 2)
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		done <- struct{}{}
	}()
	<-done
	srv.Stop()
}
