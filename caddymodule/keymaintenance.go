package caddymodule

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// maintainKeys rotates the signing key when key_rotation says so and
// reloads the key ring, so this config signs with a key another config
// on the same file made and drops retired keys from its JWKS.
func (a *App) maintainKeys(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(a.engine.KeyMaintenanceInterval())
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			if err := a.engine.MaintainKeys(context.Background(), now); err != nil {
				a.logger.Error("maintaining the signing keys failed; will retry", zap.Error(err))
			}
		}
	}
}
