package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"

	"github.com/oauthgate/caddy-oauthgate/grants"
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
		return apiErr(http.StatusServiceUnavailable, "%v", err)
	}
	path := strings.TrimPrefix(r.URL.Path, "/oauth/")
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
		case http.MethodDelete:
			return userError(eng.Users.Remove(r.Context(), name), name)
		}
		return apiErr(http.StatusMethodNotAllowed, "use PUT or DELETE on /oauth/users/<name>")
	case path == "keys" && r.Method == http.MethodGet:
		return writeAdminJSON(w, http.StatusOK, eng.Keys())
	case path == "keys/rotate" && r.Method == http.MethodPost:
		kid, err := eng.RotateKeys(r.Context())
		if err != nil {
			return apiErr(http.StatusInternalServerError, "rotating the signing key: %v", err)
		}
		return writeAdminJSON(w, http.StatusOK, map[string]string{"kid": kid})
	}
	return apiErr(http.StatusNotFound, "unknown oauth admin endpoint %s %s", r.Method, r.URL.Path)
}

func listUsers(w http.ResponseWriter, r *http.Request, eng *grants.Engine) error {
	users, err := eng.Users.List(r.Context())
	if err != nil {
		return apiErr(http.StatusInternalServerError, "listing users: %v", err)
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

// putUser adds a user (create) or replaces a user's password and claims.
// It takes a bcrypt hash, never a password: the CLI hashes locally.
func putUser(w http.ResponseWriter, r *http.Request, eng *grants.Engine, name string, create bool) error {
	var in adminUser
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return apiErr(http.StatusBadRequest, "decoding user: %v", err)
	}
	if !create {
		if in.Name != "" && in.Name != name {
			return apiErr(http.StatusBadRequest, "the name in the body differs from the URL")
		}
		in.Name = name
	}
	u := &grants.User{Name: in.Name, PasswordHash: in.PasswordHash, Claims: in.Claims}
	if err := userError(eng.Users.Put(r.Context(), u, create), in.Name); err != nil {
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
	}
	return apiErr(http.StatusBadRequest, "%v", err)
}

// writeAdminJSON answers v as JSON.
func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var _ caddy.AdminRouter = (*adminAPI)(nil)
