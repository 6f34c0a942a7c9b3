package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

// userCommand adds `caddy oauth user add|passwd|remove|list`.
func userCommand() *cobra.Command {
	user := &cobra.Command{Use: "user", Short: "Manages the users who sign in at the login page"}
	for _, sub := range []struct {
		use, short string
		args       cobra.PositionalArgs
		claims     bool
	}{
		{"add <name> [--claim name=value]...", "Adds a user; the password is read from the terminal or one line of standard input", cobra.ExactArgs(1), true},
		{"passwd <name> [--claim name=value]...", "Sets a user's password (claims kept unless --claim is given) and ends the user's sessions and grants", cobra.ExactArgs(1), true},
		{"remove <name>", "Removes a user", cobra.ExactArgs(1), false},
		{"list", "Lists users", cobra.NoArgs, false},
	} {
		c := &cobra.Command{Use: sub.use, Short: sub.short, Args: args(sub.args)}
		adminFlags(c)
		c.Flags().String("storage", "", "The bbolt storage file to open when no server is running (default: the one --config names)")
		if sub.claims {
			c.Flags().StringArray("claim", nil, "A claim as name=value (repeatable)")
		}
		verb := strings.Fields(sub.use)[0]
		c.RunE = runE(func(c *cobra.Command, fl caddycmd.Flags) error {
			return runUser(verb, fl.Args(), fl, os.Stdin, c.OutOrStdout())
		})
		user.AddCommand(c)
	}
	return user
}

// runUser runs one user subcommand.
func runUser(verb string, args []string, fl caddycmd.Flags, stdin io.Reader, stdout io.Writer) error {
	if (verb == "list") != (len(args) == 0) || len(args) > 1 {
		return usageErrorf("usage: caddy oauth user add|passwd|remove <name>, or caddy oauth user list")
	}
	var body adminUser
	if len(args) == 1 {
		body.Name = args[0]
	}
	switch verb {
	case "add", "passwd":
		claims, err := parseClaims(fl)
		if err != nil {
			return err
		}
		body.Claims = claims
		pw, err := readPassword(stdin)
		if err != nil {
			return err
		}
		hash, err := bcrypt.GenerateFromPassword(pw, 14)
		if err != nil {
			return err
		}
		body.PasswordHash = string(hash)
	case "remove", "list":
	default:
		return usageErrorf("unknown subcommand %q: use add, passwd, remove or list", verb)
	}
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return err
	}
	err = viaAdmin(addr, verb, body, stdout)
	var offline *offlineError
	if !errors.As(err, &offline) {
		return err
	}
	path, err := offlineFile(fl, addr)
	if err != nil {
		return err
	}
	return viaFile(path, verb, body, stdout, addr)
}

func parseClaims(fl caddycmd.Flags) (map[string]string, error) {
	list, _ := fl.GetStringArray("claim")
	if len(list) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErrorf("--claim %q must look like name=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// readPassword reads a password from the terminal (twice, without echo)
// or one line from a pipe.
func readPassword(stdin io.Reader) ([]byte, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(os.Stderr, "Password: ")
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, err
		}
		fmt.Fprint(os.Stderr, "Confirm password: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the passwords do not match")
		}
		return checkPassword(pw)
	}
	line, err := bufio.NewReader(stdin).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return checkPassword(bytes.TrimRight(line, "\r\n"))
}

func checkPassword(pw []byte) ([]byte, error) {
	if len(pw) < 8 || len(pw) > 72 {
		return nil, errors.New("the password must be 8 to 72 bytes long (bcrypt's limit)")
	}
	return pw, nil
}

// offlineError says no server answered at the admin address.
type offlineError struct{ err error }

func (e *offlineError) Error() string { return e.err.Error() }

func viaAdmin(addr, verb string, u adminUser, stdout io.Writer) error {
	var method, uri string
	var body io.Reader
	switch verb {
	case "list":
		method, uri = http.MethodGet, "/oauth/users"
	case "add":
		method, uri = http.MethodPost, "/oauth/users"
	case "passwd":
		// Escaped: a name such as 'carol2?x' must stay one path segment,
		// not become 'carol2' and a query.
		method, uri = http.MethodPut, "/oauth/users/"+url.PathEscape(u.Name)
	case "remove":
		method, uri = http.MethodDelete, "/oauth/users/"+url.PathEscape(u.Name)
	}
	if verb == "add" || verb == "passwd" {
		b, _ := json.Marshal(u)
		body = bytes.NewReader(b)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, body)
	if err != nil {
		if strings.Contains(err.Error(), "performing request") {
			return &offlineError{err}
		}
		return decodeAdminError(err)
	}
	defer resp.Body.Close()
	if verb == "list" {
		var users []adminUser
		if err := json.NewDecoder(resp.Body).Decode(&users); err != nil {
			return err
		}
		printUsers(stdout, users)
		return nil
	}
	fmt.Fprintf(stdout, "%s: done (running server at %s)\n", verb, addr)
	return nil
}

// viaFile does the same on the storage file when no server runs.
func viaFile(path, verb string, u adminUser, stdout io.Writer, addr string) error {
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "oauth", "oauth.db")
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no server answers at %s and the storage file %s cannot be used (%v): start the server, or pass --address or --storage", addr, path, err)
	}
	st, err := bolt.Open(path, time.Second)
	if err != nil {
		return fmt.Errorf("no server answers at %s, and %w; if a server is running, pass its admin address with --address", addr, err)
	}
	defer st.Close()
	users := grants.StoredUsers(st)
	ctx := context.Background()
	switch verb {
	case "list":
		list, err := users.List(ctx)
		if err != nil {
			return err
		}
		out := make([]adminUser, 0, len(list))
		for _, x := range list {
			out = append(out, adminUser{Name: x.Name, Claims: x.Claims, Source: "storage"})
		}
		printUsers(stdout, out)
		return nil
	case "add":
		err = users.Put(ctx, &grants.User{Name: u.Name, PasswordHash: u.PasswordHash, Claims: u.Claims}, true)
	case "passwd":
		// Keeps the claims unless --claim gave new ones; ends the user's
		// grants and sessions.
		err = grants.UpdateStoredUser(ctx, st, &grants.User{Name: u.Name, PasswordHash: u.PasswordHash, Claims: u.Claims})
	case "remove":
		err = grants.RemoveStoredUser(ctx, st, u.Name)
	}
	if err := userError(err, u.Name); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: done (storage file %s; no server was running)\n", verb, path)
	return nil
}

func printUsers(w io.Writer, users []adminUser) {
	if len(users) == 0 {
		fmt.Fprintln(w, "no users")
		return
	}
	for _, u := range users {
		var claims []string
		for k, v := range u.Claims {
			claims = append(claims, k+"="+v)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", u.Name, u.Source, strings.Join(claims, " "))
	}
}
