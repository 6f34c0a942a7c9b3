package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "oauth",
		Usage: "user|client|keys|revoke|backup ...",
		Short: "Manages caddy-oauthgate users, clients, signing keys and revocations, and makes backups",
		Long: `
Manages the users, run-time clients, signing keys and revocations of a
caddy-oauthgate server. Each group has its own help: caddy oauth <group> --help.

  user     the users who sign in at the login page:
             caddy oauth user add <name> [--claim email=a@example.com]...
             caddy oauth user passwd <name>   (ends the user's sessions and grants)
             caddy oauth user remove <name>
             caddy oauth user list
           Passwords are read from the terminal without echo, or as one line
           from standard input; they are hashed with bcrypt here and only the
           hash is sent. When no server answers, user commands open the
           bbolt storage file itself (the one --config names, or --storage,
           default oauth/oauth.db in Caddy's data directory); that works only
           while no server holds the file. With PostgreSQL storage they need
           a running node (any one: they share the database).
           Users defined in the Caddy config are listed but change only there.
  client   clients registered at run time (config clients change only there):
             caddy oauth client add <id> --grant-types client_credentials [--scopes a,b]...
             caddy oauth client list
             caddy oauth client remove <id>
  keys     the signing keys:
             caddy oauth keys list
             caddy oauth keys rotate
  revoke   every grant and token of a user or a client:
             caddy oauth revoke --subject <user> | --client <id>
  backup   a consistent copy of the live storage file (signing keys
           included: keep it like a TLS private key):
             caddy oauth backup <file> [--force]
           bbolt storage only; back up PostgreSQL storage with pg_dump.

All commands talk to the running server through its admin API (--address,
or the admin address of --config, or localhost:2019).

Errors are printed as one line on standard error, starting with "error: ".
Exit status: 0 done; 1 the server refused the operation or it failed (the
line says why); 2 the command line is wrong (unknown flag, missing or extra
argument).
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
				return finish(c, usageErrorf("%v; see %s --help", err, c.CommandPath()))
			})
			cmd.AddCommand(userCommand(), keysCommand(), clientCommand(), revokeCommand(), backupCommand())
		},
	})
}

// Exit codes of caddy oauth. Caddy's own commands exit 1 for any failure
// and use 2 only for a forced quit of a running server, which these
// commands never are; so 2 is free for the usual meaning of a usage error.
const (
	exitFailed = caddy.ExitCodeFailedStartup // 1: refused or failed
	exitUsage  = 2                           // the command line is wrong
)

// usageError is an error in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// errFailed makes caddy exit 1 once the reason is printed.
var errFailed = errors.New("caddy oauth failed")

// finish prints err as one line, "error: ...", and returns what makes
// Caddy's main exit with the code for it (nil for no error). Caddy's main
// exits with a code other than 1 only for the error type
// WrapCommandFuncForCobra makes, which is unexported, so that function
// makes it; given no error, it logs nothing.
func finish(c *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	// The line is ours: cobra must not print "Error: ..." again.
	c.SilenceErrors = true
	c.Root().SilenceErrors = true
	fmt.Fprintf(c.ErrOrStderr(), "error: %s\n", oneLine(err.Error()))
	var u *usageError
	if errors.As(err, &u) {
		return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return exitUsage, nil })(c, nil)
	}
	return errFailed
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// runE makes a cobra RunE of a command body: its error is printed as one
// line and sets the exit code.
func runE(body func(c *cobra.Command, fl caddycmd.Flags) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, _ []string) error {
		return finish(c, body(c, caddycmd.Flags{FlagSet: c.Flags()}))
	}
}

// args checks the positional arguments with check; a wrong count is a
// usage error that shows the command's usage line.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, a []string) error {
		if err := check(c, a); err != nil {
			return finish(c, usageErrorf("%v; usage: %s", err, c.UseLine()))
		}
		return nil
	}
}

// adminFlags adds the flags that locate the running server's admin API.
func adminFlags(c *cobra.Command) {
	c.Flags().String("address", "", "The admin API address of the running server")
	c.Flags().StringP("config", "c", "", "A config file to read the admin address from")
	c.Flags().StringP("adapter", "a", "", "The adapter of --config")
}

// adminError is the admin API's refusal of a request: its status and the
// message of its JSON error body ({"error": "..."}).
type adminError struct {
	Status  int
	Message string
}

func (e *adminError) Error() string { return e.Message }

// adminStatusError matches the error caddycmd.AdminAPIRequest makes of an
// answer with status 400 or more; its body follows.
var adminStatusError = regexp.MustCompile(`(?s)^caddy responded with error: HTTP (\d+): (.*)$`)

// decodeAdminError turns the error of caddycmd.AdminAPIRequest for a
// refused request into an adminError carrying the admin API's message,
// not its escaped JSON. Other errors are returned as they are.
func decodeAdminError(err error) error {
	m := adminStatusError.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	status, _ := strconv.Atoi(m[1])
	var body struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(m[2])
	if json.Unmarshal([]byte(msg), &body) == nil && body.Error != "" {
		msg = body.Error
	}
	if msg == "" {
		msg = fmt.Sprintf("the admin API answered %d %s", status, http.StatusText(status))
	}
	return &adminError{Status: status, Message: msg}
}

// adminCall sends one request to the running server's admin API and
// decodes a JSON answer into out (when not nil). It says plainly when no
// server answers, and gives the admin API's message when it refuses.
func adminCall(fl caddycmd.Flags, method, uri string, in, out any) error {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return err
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	var hdr http.Header
	if in != nil {
		hdr = http.Header{"Content-Type": {"application/json"}}
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, hdr, body)
	if err != nil {
		if strings.Contains(err.Error(), "performing request") {
			return fmt.Errorf("no Caddy server answers at %s: start it (caddy run --config ...), or pass its admin address with --address or --config", addr)
		}
		return decodeAdminError(err)
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
