package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"

	"github.com/oauthgate/caddy-oauthgate/grants"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// live is the running config's oauth app. The admin API is provisioned
// without config and outlives configs, so it looks the app up per request.
var live atomic.Pointer[App]

// adminAPI serves /oauth/... on Caddy's admin endpoint.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.oauth",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/oauth/", Handler: caddy.AdminHandlerFunc(serveAdmin)}}
}

// adminUser is a user as the admin API shows and takes it.
type adminUser struct {
	Name         string            `json:"name"`
	PasswordHash string            `json:"password_hash,omitempty"`
	Claims       map[string]string `json:"claims,omitempty"`
	Source       string            `json:"source,omitempty"`
}

func apiErr(status int, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return caddy.APIError{HTTPStatus: status, Err: err, Message: err.Error()}
}

func serveAdmin(w http.ResponseWriter, r *http.Request) error {
	app := live.Load()
	if app == nil {
		return apiErr(http.StatusServiceUnavailable, "the running config has no oauth app")
	}
	eng, err := app.ready()
	if err != nil {
		return retryLater(w, apiErr(http.StatusServiceUnavailable, "%v", err))
	}
	if r.URL.Path == "/oauth/backup" {
		return retryLater(w, serveBackup(w, r, app.life.store, app.logger))
	}
	return retryLater(w, routeAdmin(w, r, eng))
}

// retryLater adds Retry-After to a 503: the storage is unavailable (a
// full disk) and the operator's script may try again. Caddy's admin
// server logs every API error at ERROR with its message, which names the
// cause, so the failure is not logged here a second time.
func retryLater(w http.ResponseWriter, err error) error {
	var ae caddy.APIError
	if errors.As(err, &ae) && ae.HTTPStatus == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(grants.RetryAfterUnavailable))
	}
	return err
}

// storageStatus is the status of a failure to read or write the storage:
// 503 when the storage is unavailable (a full disk, a closed file), 500
// for anything else.
func storageStatus(err error) int {
	if errors.Is(err, storage.ErrUnavailable) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// adminMethods lists the methods each admin endpoint takes, by its path
// under /oauth/ (a key ending in / stands for every path under it).
var adminMethods = map[string][]string{
	"users":       {http.MethodGet, http.MethodPost},
	"users/":      {http.MethodPut, http.MethodDelete},
	"clients":     {http.MethodGet, http.MethodPost},
	"clients/":    {http.MethodDelete},
	"revoke":      {http.MethodPost},
	"keys":        {http.MethodGet},
	"keys/rotate": {http.MethodPost},
	"backup":      {http.MethodGet},
}

// allowedMethods returns the methods of the endpoint at path (under
// /oauth/), or nil when there is none.
func allowedMethods(path string) []string {
	if m, ok := adminMethods[path]; ok {
		return m
	}
	if prefix, _, ok := strings.Cut(path, "/"); ok {
		return adminMethods[prefix+"/"]
	}
	return nil
}

// routeAdmin serves one admin request with the running engine. A method
// the endpoint does not take is answered 405 with Allow (RFC 9110
// §15.5.6), so a script that GETs a POST-only route learns what to use.
func routeAdmin(w http.ResponseWriter, r *http.Request, eng *grants.Engine) error {
	path := strings.TrimPrefix(r.URL.Path, "/oauth/")
	allowed := allowedMethods(path)
	if allowed == nil {
		return apiErr(http.StatusNotFound, "unknown oauth admin endpoint %s", r.URL.Path)
	}
	if !slices.Contains(allowed, r.Method) {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		return apiErr(http.StatusMethodNotAllowed, "%s does not take %s; use %s", r.URL.Path, r.Method, strings.Join(allowed, " or "))
	}
	switch {
	case path == "users" && r.Method == http.MethodGet:
		return listUsers(w, r, eng)
	case path == "users" && r.Method == http.MethodPost:
		return putUser(w, r, eng, "", true)
	case strings.HasPrefix(path, "users/"):
		name := strings.TrimPrefix(path, "users/")
		switch r.Method {
		case http.MethodPut:
			return putUser(w, r, eng, name, false)
		default: // DELETE
			return userError(eng.RemoveUser(r.Context(), name), name)
		}
	case path == "clients" && r.Method == http.MethodGet:
		list, err := eng.ListClients(r.Context())
		if err != nil {
			return apiErr(storageStatus(err), "listing clients: %v", err)
		}
		return writeAdminJSON(w, http.StatusOK, list)
	case path == "clients" && r.Method == http.MethodPost:
		return addClient(w, r, eng)
	case strings.HasPrefix(path, "clients/") && r.Method == http.MethodDelete:
		id := strings.TrimPrefix(path, "clients/")
		return clientError(eng.RemoveClient(r.Context(), id), id)
	case path == "revoke" && r.Method == http.MethodPost:
		return revokeAll(w, r, eng)
	case path == "keys" && r.Method == http.MethodGet:
		return writeAdminJSON(w, http.StatusOK, eng.Keys())
	case path == "keys/rotate" && r.Method == http.MethodPost:
		kid, err := eng.RotateKeys(r.Context())
		if err != nil {
			return apiErr(storageStatus(err), "rotating the signing key: %v", err)
		}
		return writeAdminJSON(w, http.StatusOK, map[string]string{"kid": kid})
	}
	return apiErr(http.StatusNotFound, "unknown oauth admin endpoint %s %s", r.Method, r.URL.Path)
}

func listUsers(w http.ResponseWriter, r *http.Request, eng *grants.Engine) error {
	users, err := eng.ListUsers(r.Context())
	if err != nil {
		return apiErr(storageStatus(err), "listing users: %v", err)
	}
	out := make([]adminUser, 0, len(users))
	for _, u := range users {
		src := "storage"
		if u.FromConfig {
			src = "config"
		}
		out = append(out, adminUser{Name: u.Name, Claims: u.Claims, Source: src})
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// putUser adds a user (create) or changes a user's password or claims,
// keeping what the body leaves out.
// It takes a bcrypt hash, never a password: the CLI hashes locally.
func putUser(w http.ResponseWriter, r *http.Request, eng *grants.Engine, name string, create bool) error {
	var in adminUser
	if err := decodeAdmin(w, r, &in); err != nil {
		return err
	}
	if !create {
		if in.Name != "" && in.Name != name {
			return apiErr(http.StatusBadRequest, "the name in the body differs from the URL")
		}
		in.Name = name
	}
	u := &grants.User{Name: in.Name, PasswordHash: in.PasswordHash, Claims: in.Claims}
	var err error
	if create {
		err = eng.AddUser(r.Context(), u)
	} else {
		// Keeps what the body does not give; a new password revokes the
		// user's grants and sessions.
		err = eng.UpdateUser(r.Context(), u)
	}
	if err := userError(err, in.Name); err != nil {
		return err
	}
	if create {
		w.WriteHeader(http.StatusCreated)
	}
	return nil
}

func userError(err error, name string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, grants.ErrUserExists):
		return apiErr(http.StatusConflict, "user %q already exists", name)
	case errors.Is(err, grants.ErrUserNotFound):
		return apiErr(http.StatusNotFound, "user %q does not exist", name)
	case errors.Is(err, grants.ErrConfigUser):
		return apiErr(http.StatusConflict, "user %q is defined in the Caddy config; change it there", name)
	case errors.Is(err, storage.ErrUnavailable):
		return apiErr(http.StatusServiceUnavailable, "user %q: %v", name, err)
	}
	return apiErr(http.StatusBadRequest, "%v", err)
}

// adminClient is a client as the admin API takes it. The server makes the
// secret.
type adminClient struct {
	grants.ClientSpec
	// Public sets auth_method none.
	Public bool `json:"public,omitempty"`
}

// decodeAdmin reads a small JSON body strictly.
func decodeAdmin(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiErr(http.StatusBadRequest, "decoding the request body: %v", err)
	}
	return nil
}

// addClient registers a client and answers its secret, the only time it
// is shown.
func addClient(w http.ResponseWriter, r *http.Request, eng *grants.Engine) error {
	var in adminClient
	if err := decodeAdmin(w, r, &in); err != nil {
		return err
	}
	c := &grants.Client{ClientSpec: in.ClientSpec}
	if in.Public {
		if err := c.MakePublic(); err != nil {
			return apiErr(http.StatusBadRequest, "%v", err)
		}
	}
	secret, err := eng.AddClient(r.Context(), c)
	if err := clientError(err, in.ID); err != nil {
		return err
	}
	return writeAdminJSON(w, http.StatusCreated, map[string]string{"client_id": c.ID, "client_secret": secret})
}

func clientError(err error, id string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, grants.ErrClientExists):
		return apiErr(http.StatusConflict, "client %q already exists", id)
	case errors.Is(err, grants.ErrClientNotFound):
		return apiErr(http.StatusNotFound, "client %q does not exist (or is not one added at run time)", id)
	case errors.Is(err, grants.ErrConfigClient):
		return apiErr(http.StatusConflict, "client %q is defined in the Caddy config; change it there", id)
	case errors.Is(err, storage.ErrUnavailable):
		return apiErr(http.StatusServiceUnavailable, "client %q: %v", id, err)
	}
	return apiErr(http.StatusBadRequest, "%v", err)
}

// revokeRequest names whose tokens to revoke: exactly one of the two.
type revokeRequest struct {
	Subject  string `json:"subject,omitempty"`
	ClientID string `json:"client_id,omitempty"`
}

// revokeAll revokes every grant and access token of a subject or client.
func revokeAll(w http.ResponseWriter, r *http.Request, eng *grants.Engine) error {
	var in revokeRequest
	if err := decodeAdmin(w, r, &in); err != nil {
		return err
	}
	var (
		n   int
		err error
	)
	switch {
	case (in.Subject == "") == (in.ClientID == ""):
		return apiErr(http.StatusBadRequest, `give exactly one of "subject" and "client_id"`)
	case in.Subject != "":
		n, err = eng.RevokeSubjectOrUser(r.Context(), in.Subject)
	default:
		n, err = eng.RevokeClient(r.Context(), in.ClientID)
	}
	if err != nil {
		return apiErr(storageStatus(err), "revoking: %v", err)
	}
	return writeAdminJSON(w, http.StatusOK, map[string]int{"grants_revoked": n})
}

// writeAdminJSON answers v as JSON.
func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var _ caddy.AdminRouter = (*adminAPI)(nil)
