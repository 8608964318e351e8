package pgxoutbox_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/outbox/pgxoutbox"
)

type signup struct {
	ID       string `json:"id"`
	Email    string `json:"email"`
	Position int    `json:"position"`
}

// The signup and its event commit together, or neither does.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@localhost:5432/app")
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	s := signup{ID: "su_1", Email: "a@example.com", Position: 17}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO signups (id, email, position) VALUES ($1, $2, $3)`, s.ID, s.Email, s.Position); err != nil {
			return fmt.Errorf("inserting signup: %w", err)
		}
		return pgxoutbox.Publish(ctx, tx, outbox.Event{
			Type:        "signup.created",
			TenantID:    "wl_42", // optional: scopes delivery to that tenant's subscriptions
			OrderingKey: s.ID,    // optional: ordered subscriptions get one key's events in order
			Payload:     map[string]any{"signup": s},
		})
	})
	if err != nil {
		panic(err)
	}
}
