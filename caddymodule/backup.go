package caddymodule

import (
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/postgres"
)

// serveBackup answers GET /oauth/backup with a consistent copy of the
// storage file, taken while the server runs (storage.Backuper): what a
// stopped server's file would be at one moment, ready to be put in the
// place of storage_path. It holds the signing keys, so the admin
// endpoint's access control is what guards them.
//
// The copy is streamed as it is read. If it fails after the first bytes
// went out, the status cannot change any more: the connection is cut
// instead, so that the client sees a truncated answer rather than a
// short file that looks whole.
func serveBackup(w http.ResponseWriter, r *http.Request, st storage.Store, log *zap.Logger) error {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return apiErr(http.StatusMethodNotAllowed, "use GET on /oauth/backup")
	}
	b, ok := st.(storage.Backuper)
	if !ok {
		if _, pg := st.(*postgres.Store); pg {
			return apiErr(http.StatusNotImplemented, "the storage is PostgreSQL, which Caddy does not back up: back up the database with pg_dump (for example: pg_dump --format=custom --file=oauth.dump \"$OAUTH_PG_DSN\"), which copies every node's data at once")
		}
		return apiErr(http.StatusNotImplemented, "this storage backend (%T) cannot make a backup: back it up with its own tools", st)
	}
	began := time.Now()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="oauth-backup-`+began.UTC().Format("20060102T150405Z")+`.db"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	sw := &sentWriter{w: w, rc: http.NewResponseController(w)}
	n, err := b.Backup(r.Context(), sw)
	remote, _, _ := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		if !sw.sent {
			h.Del("Content-Disposition")
			h.Del("Content-Type")
			return apiErr(storageStatus(err), "backup: %v", err)
		}
		log.Error("storage backup failed after part of it was sent; the connection is cut so that the client does not keep a partial copy",
			zap.Int64("bytes_sent", n), zap.String("remote_ip", remote), zap.Error(err))
		panic(http.ErrAbortHandler)
	}
	// A copy of the signing keys left the process: worth a line at INFO.
	log.Info("storage backup sent", zap.Int64("bytes", n), zap.Duration("took", time.Since(began)),
		zap.String("remote_ip", remote))
	return nil
}

// backupStallTimeout ends a backup whose client stops reading: the copy
// holds a read transaction, and while it is open the file cannot reuse
// the pages freed by writes, so it grows with every write, and past the
// initial mapping writers wait for it.
var backupStallTimeout = 30 * time.Second

// sentWriter notes whether anything was written to the response, and
// gives every write backupStallTimeout to get through.
type sentWriter struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	sent bool
}

func (s *sentWriter) Write(p []byte) (int, error) {
	s.sent = true
	// Not every ResponseWriter supports deadlines; Caddy's admin server
	// does.
	_ = s.rc.SetWriteDeadline(time.Now().Add(backupStallTimeout))
	return s.w.Write(p)
}
