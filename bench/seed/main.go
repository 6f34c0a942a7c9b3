//go:build oauthgate_bench

// Command seed fills an oauth storage file with live refresh-token grants,
// for the large-database figures of bench/run.sh. Caddy must not hold the
// file while it runs.
//
//	go run ./bench/seed -db oauth.db -n 1000000 -client bench-web -sub bench-user -out sample.txt
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

func main() {
	db := flag.String("db", "", "storage file")
	n := flag.Int("n", 1000000, "grants to create")
	client := flag.String("client", "bench-web", "client id")
	sub := flag.String("sub", "bench-user", "subject (a user name)")
	scope := flag.String("scope", "openid", "space-separated scope")
	out := flag.String("out", "", "file for a sample of 64 refresh tokens")
	flag.Parse()
	if *db == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: seed -db FILE -out SAMPLE [-n N]")
		os.Exit(2)
	}
	st, err := bolt.Open(*db, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer st.Close()
	start := time.Now()
	sample, err := grants.SeedRefreshTokens(context.Background(), st, *client, *sub, strings.Fields(*scope), *n, 64, 24*time.Hour)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, []byte(strings.Join(sample, "\n")+"\n"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("seeded %d grants in %s\n", *n, time.Since(start).Round(time.Millisecond))
}
