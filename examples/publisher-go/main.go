// Command publisher-go is a small waitlist service that publishes its events through the
// outbox: every change to a signup and the event describing it commit in one transaction,
// so a webhook goes out if and only if the change happened.
//
//	DATABASE_URL=postgres://... go run ./examples/publisher-go -signups 3
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"time"

	_ "github.com/lib/pq"

	"github.com/referralloop/outbox-relay/outbox"
)

const schema = `CREATE TABLE IF NOT EXISTS signups (
    id          text PRIMARY KEY,
    waitlist_id text NOT NULL,
    email       text NOT NULL,
    position    integer NOT NULL
)`

// signup is the application's own row; the event payload carries it.
type signup struct {
	ID         string `json:"id"`
	WaitlistID string `json:"waitlist_id"`
	Email      string `json:"email"`
	Position   int    `json:"position"`
}

func main() {
	n := flag.Int("signups", 3, "how many signups to create")
	waitlist := flag.String("waitlist", "wl_42", "the waitlist (tenant) the signups join")
	pause := flag.Duration("pause", 200*time.Millisecond, "pause between changes, to watch them arrive")
	flag.Parse()
	if err := run(context.Background(), os.Getenv("DATABASE_URL"), *n, *waitlist, *pause); err != nil {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dsn string, n int, waitlist string, pause time.Duration) error {
	if dsn == "" {
		return fmt.Errorf("DATABASE_URL is required")
	}
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return fmt.Errorf("opening database: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("creating signups table: %w", err)
	}
	pub := outbox.Publisher{Schema: os.Getenv("RELAY_SCHEMA")}

	var created []signup
	for i := range n {
		s := signup{ID: fmt.Sprintf("su_%d_%d", time.Now().Unix(), i+1), WaitlistID: waitlist, Email: fmt.Sprintf("person%d@example.com", i+1), Position: i + 1}
		err := inTx(ctx, db, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO signups (id, waitlist_id, email, position) VALUES ($1, $2, $3, $4)`, s.ID, s.WaitlistID, s.Email, s.Position); err != nil {
				return err
			}
			return pub.Publish(ctx, tx, outbox.Event{Type: "signup.created", TenantID: waitlist, OrderingKey: s.ID, Payload: map[string]any{"signup": s}})
		})
		if err != nil {
			return fmt.Errorf("creating signup: %w", err)
		}
		fmt.Printf("publisher: created %s at position %d\n", s.ID, s.Position)
		created = append(created, s)
		time.Sleep(pause)
	}
	if len(created) < 2 {
		return nil
	}

	// The last signup refers a friend and jumps to the front; everyone else moves down one.
	last := created[len(created)-1]
	err = inTx(ctx, db, func(tx *sql.Tx) error {
		for i := range created {
			s := &created[i]
			old := s.Position
			if s.ID == last.ID {
				s.Position = 1
			} else {
				s.Position++
			}
			if _, err := tx.ExecContext(ctx, `UPDATE signups SET position = $2 WHERE id = $1`, s.ID, s.Position); err != nil {
				return err
			}
			if err := pub.Publish(ctx, tx, outbox.Event{Type: "signup.position_changed", TenantID: waitlist, OrderingKey: s.ID,
				Payload: map[string]any{"signup": s, "previous_position": old}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("moving signups: %w", err)
	}
	fmt.Printf("publisher: %s moved to the front\n", last.ID)
	time.Sleep(pause)

	gone := created[0]
	err = inTx(ctx, db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM signups WHERE id = $1`, gone.ID); err != nil {
			return err
		}
		return pub.Publish(ctx, tx, outbox.Event{Type: "signup.deleted", TenantID: waitlist, OrderingKey: gone.ID, Payload: map[string]any{"signup": map[string]string{"id": gone.ID}}})
	})
	if err != nil {
		return fmt.Errorf("deleting signup: %w", err)
	}
	fmt.Printf("publisher: deleted %s\n", gone.ID)
	return nil
}

// inTx runs f in a transaction: the application's change and its event commit together.
func inTx(ctx context.Context, db *sql.DB, f func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
