package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/referralloop/outbox-relay/internal/retry"
	"github.com/referralloop/outbox-relay/outbox"
)

// prepareSchema migrates (or, with RELAY_AUTO_MIGRATE=false, waits for someone to), retrying
// while the database is unreachable.
func (r *Relay) prepareSchema(ctx context.Context) error {
	bo := retry.NewBackoff()
	for {
		err := r.tryPrepareSchema(ctx)
		if err == nil {
			r.migrated.Store(true)
			return nil
		}
		if errors.Is(err, outbox.ErrSchemaTooNew) {
			return err
		}
		wait := bo.NextBackOff()
		r.log.Warn().Err(err).Dur("retry_in", wait).Msg("preparing database schema")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (r *Relay) tryPrepareSchema(ctx context.Context) error {
	if r.cfg.AutoMigrate {
		res, err := outbox.Migrate(ctx, r.db.DB, outbox.MigrateOptions{Schema: r.cfg.Schema, NotifyTrigger: r.cfg.NotifyTrigger})
		if err != nil {
			return err
		}
		if len(res.Applied) > 0 {
			r.log.Info().Strs("applied", res.Applied).Int("version", res.Version).Msg("migrated")
		}
		return nil
	}
	v, err := outbox.SchemaVersion(ctx, r.db.DB, r.cfg.Schema)
	if err != nil {
		return err
	}
	if want := outbox.LatestVersion(); v != want {
		return fmt.Errorf("schema %s is at version %d, this relay needs %d: run outbox-relay migrate", r.cfg.Schema, v, want)
	}
	return nil
}

// ready reports whether this replica is doing its job, and if not, why: schema migrated,
// claiming works, results are being recorded, requests do not fail for reasons of this
// process, every active subscription's secret opens with the configured keys, and the
// LISTEN connection is up (when notifications are used).
func (r *Relay) ready() (bool, string) {
	switch {
	case !r.migrated.Load():
		return false, "schema not migrated yet"
	case !r.started.Load():
		return false, "not claiming"
	case !r.dispatcher.Healthy() || !r.deliverer.Healthy():
		return false, "database unreachable"
	case r.listener != nil && !r.listener.Connected():
		return false, "listen connection down"
	}
	if why := r.deliverer.Trouble(); why != "" {
		return false, why
	}
	if why := r.keys.Trouble(); why != "" {
		return false, why
	}
	return true, "ok"
}

// opsHandler serves the ops port: /healthz (the process answers), /readyz (ready, with the
// reason when not), /metrics.
func (r *Relay) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := r.ready()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(why + "\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.registry, promhttp.HandlerOpts{}))
	return mux
}
