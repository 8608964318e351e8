package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
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
		r.log.Warn().Err(err).Dur("retry_in", wait.Round(time.Millisecond)).Msg("preparing database schema")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// tryPrepareSchema migrates the schema or checks that it is migrated, then reads the
// delivery ID key it holds.
func (r *Relay) tryPrepareSchema(ctx context.Context) error {
	if err := r.checkSchema(ctx); err != nil {
		return err
	}
	return r.deliveryIDs.Load(ctx, r.db.DB, r.cfg.Schema)
}

func (r *Relay) checkSchema(ctx context.Context) error {
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
	stale, err := outbox.StaleFunctions(ctx, r.db.DB, r.cfg.Schema)
	if err != nil {
		return err
	}
	if len(stale) > 0 {
		return fmt.Errorf("schema %s lacks this relay's version of %s: run outbox-relay migrate", r.cfg.Schema, strings.Join(stale, ", "))
	}
	return nil
}

// ready reports whether this replica is doing its job, and if not, why: schema migrated,
// the active-relay lease followed, and, on the active relay, fan-outs and claims working
// and the LISTEN connection up (when notifications are used); on any replica, results
// being recorded, requests not failing for reasons of this process, and every active
// subscription's secret opening with the configured keys.
//
// A standby is ready: it serves the API and takes over within seconds. (As a sidecar its
// readiness is its pod's: an unready standby would take the application out of service.)
func (r *Relay) ready() (bool, string) {
	switch {
	case !r.migrated.Load():
		return false, "schema not migrated yet"
	case !r.started.Load():
		return false, "not claiming"
	}
	checks := []func() string{r.leader.Trouble}
	active := r.leader.Leading()
	if active {
		checks = append(checks, r.dispatcher.Trouble)
		if r.listener != nil {
			checks = append(checks, r.listener.Trouble)
		}
	}
	checks = append(checks, r.deliverer.Trouble, r.keys.Trouble)
	for _, check := range checks {
		if why := check(); why != "" {
			return false, why
		}
	}
	if !active {
		if holder := r.leader.Holder(); holder != "" {
			return true, "ok (standby; the active relay is " + holder + ")"
		}
		return true, "ok (standby; electing the active relay)"
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
