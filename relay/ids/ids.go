// Package ids formats and parses the opaque identifiers users see: subscriptions "sub_...",
// deliveries "dlv_...".
//
// Subscriptions are random, so they can be created on any replica and are not guessable
// from one another.
//
// Deliveries are bigint rows inside the database: small, ordered indexes on the hot path.
// Their public IDs must not show that order, or a tenant could read the installation's
// volume off two of its own deliveries. So a delivery's public ID is its row id encrypted:
// AES-128 of a 16-byte block (8 zero bytes, then the id big-endian) under a key of the
// installation, in the lower-case base32 of subscription IDs: "dlv_" and 26 characters.
// AES is a permutation of 16-byte blocks, so each id has exactly one public ID, consecutive
// ids give unrelated ones, and nothing new is stored per delivery. Parsing decrypts and
// refuses a block whose first 8 bytes are not zero: a made-up ID passes with odds of 2^-64,
// and then names a row id that the query does not find (404, never 500).
//
// The key is generated once per installation by the migration that introduced it (table
// settings) and read at start-up (Load), so every replica formats the same IDs. Anyone with
// the key can read row ids from public IDs; it protects against tenants, not against those
// who can read the database.
//
// Relays before this scheme showed "dlv_" and the row id in base36. Those IDs still parse,
// but only for rows that existed when the schema was migrated (settings.
// delivery_id_legacy_max): otherwise a tenant could find its newer deliveries' row ids by
// trying short IDs one by one, which is the volume the random form hides.
package ids

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/referralloop/outbox-relay/outbox"
)

const (
	subscriptionPrefix = "sub_"
	deliveryPrefix     = "dlv_"
	// randomLen is the length of 16 bytes in lowerBase32: subscription IDs and new delivery
	// IDs after their prefix.
	randomLen = 26
	// legacyMaxLen is the longest base36 form of a positive int64.
	legacyMaxLen = 13
)

// lowerBase32 is Crockford-like lower-case base32 without padding: URL-safe and unambiguous.
var lowerBase32 = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewSubscriptionID returns a fresh random subscription ID: "sub_" and 26 characters.
func NewSubscriptionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return subscriptionPrefix + lowerBase32.EncodeToString(b[:])
}

// ValidSubscriptionID reports whether s has the shape of a subscription ID.
func ValidSubscriptionID(s string) bool {
	rest, ok := strings.CutPrefix(s, subscriptionPrefix)
	if !ok || len(rest) != randomLen {
		return false
	}
	_, err := lowerBase32.DecodeString(rest)
	return err == nil
}

// KeySize is the length of a delivery ID key in bytes (AES-128).
const KeySize = 16

// Deliveries formats and parses the delivery IDs of one installation; it is safe for
// concurrent use. NewDeliveries and Load make one with its key. The zero value has none
// yet, for components built before the database is reached: fill it with its Load method
// before any of them formats or parses an ID (Format panics until then).
type Deliveries struct {
	k atomic.Pointer[deliveryKey]
}

type deliveryKey struct {
	block     cipher.Block
	legacyMax int64
}

// NewDeliveries returns the delivery IDs made with key (KeySize bytes), which accept the
// old base36 form for row ids up to legacyMax (0: never).
func NewDeliveries(key []byte, legacyMax int64) (*Deliveries, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("delivery ID key: want %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("delivery ID key: %w", err)
	}
	d := new(Deliveries)
	d.k.Store(&deliveryKey{block: block, legacyMax: legacyMax})
	return d, nil
}

func (d *Deliveries) key() *deliveryKey {
	k := d.k.Load()
	if k == nil {
		panic("ids: delivery IDs used before their key was loaded")
	}
	return k
}

// Format turns a delivery's row id into its public ID.
func (d *Deliveries) Format(id int64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[8:], uint64(id))
	d.key().block.Encrypt(b[:], b[:])
	return deliveryPrefix + lowerBase32.EncodeToString(b[:])
}

// Parse turns a public delivery ID, new or old form, back into the row id; ok is false for
// anything Format (or, below the legacy bound, an older relay) could not have produced.
func (d *Deliveries) Parse(s string) (id int64, ok bool) {
	k := d.key()
	rest, found := strings.CutPrefix(s, deliveryPrefix)
	if !found {
		return 0, false
	}
	switch {
	case len(rest) == randomLen:
		b, err := lowerBase32.DecodeString(rest)
		// The decoder ignores the last character's 2 unused bits: only the canonical
		// spelling is an ID, so one delivery never has several.
		if err != nil || len(b) != 16 || lowerBase32.EncodeToString(b) != rest {
			return 0, false
		}
		k.block.Decrypt(b, b)
		if binary.BigEndian.Uint64(b[:8]) != 0 {
			return 0, false
		}
		id = int64(binary.BigEndian.Uint64(b[8:]))
		return id, id > 0
	case rest != "" && len(rest) <= legacyMaxLen && strings.ToLower(rest) == rest:
		id, err := strconv.ParseInt(rest, 36, 64)
		if err != nil || id <= 0 || id > k.legacyMax {
			return 0, false
		}
		return id, true
	}
	return 0, false
}

// Cursor tags: the first 8 bytes of a sealed position, so that a cursor never passes for a
// delivery ID (tag 0) nor a cursor of one list for another's.
const (
	CursorDeliveries uint64 = 1 + iota
	CursorEvents
)

// SealCursor hides pos, a row position in a list (a delivery's or an outbox row's id), the
// way Format hides a delivery's id, under tag (CursorDeliveries, CursorEvents): a list's
// cursor then tells no more than the IDs on its page.
func (d *Deliveries) SealCursor(tag uint64, pos int64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], tag)
	binary.BigEndian.PutUint64(b[8:], uint64(pos))
	d.key().block.Encrypt(b[:], b[:])
	return lowerBase32.EncodeToString(b[:])
}

// OpenCursor is the inverse of SealCursor with the same tag; ok is false for anything else.
func (d *Deliveries) OpenCursor(tag uint64, s string) (pos int64, ok bool) {
	k := d.key()
	if len(s) != randomLen {
		return 0, false
	}
	b, err := lowerBase32.DecodeString(s)
	if err != nil || len(b) != 16 || lowerBase32.EncodeToString(b) != s {
		return 0, false
	}
	k.block.Decrypt(b, b)
	if binary.BigEndian.Uint64(b[:8]) != tag {
		return 0, false
	}
	pos = int64(binary.BigEndian.Uint64(b[8:]))
	return pos, pos > 0
}

// Settings rows that Load reads; the migration that created the table wrote them.
const (
	settingKey       = "delivery_id_key"
	settingLegacyMax = "delivery_id_legacy_max"
)

const loadSettings = `SELECT
    (SELECT value FROM {{schema}}.settings WHERE name = '` + settingKey + `'),
    (SELECT value FROM {{schema}}.settings WHERE name = '` + settingLegacyMax + `')`

// ErrNoKey means the schema holds no delivery ID key: it was not migrated.
var ErrNoKey = errors.New("no delivery ID key in the settings table")

// Load reads the installation's delivery ID key from schema (migrated).
func Load(ctx context.Context, db *sql.DB, schema string) (*Deliveries, error) {
	d := new(Deliveries)
	if err := d.Load(ctx, db, schema); err != nil {
		return nil, err
	}
	return d, nil
}

// Load reads the installation's delivery ID key from schema (migrated) into d. Loading
// again is harmless: the key never changes.
func (d *Deliveries) Load(ctx context.Context, db *sql.DB, schema string) error {
	var key, legacyMax sql.NullString
	if err := db.QueryRowContext(ctx, outbox.Qualify(schema, loadSettings)).Scan(&key, &legacyMax); err != nil {
		return fmt.Errorf("reading the delivery ID key: %w", err)
	}
	if !key.Valid {
		return ErrNoKey
	}
	raw, err := hex.DecodeString(key.String)
	if err != nil {
		return fmt.Errorf("delivery ID key: %w", err)
	}
	var max int64
	if legacyMax.Valid {
		if max, err = strconv.ParseInt(legacyMax.String, 10, 64); err != nil {
			return fmt.Errorf("%s: %w", settingLegacyMax, err)
		}
	}
	loaded, err := NewDeliveries(raw, max)
	if err != nil {
		return err
	}
	d.k.Store(loaded.k.Load())
	return nil
}
