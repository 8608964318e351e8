// Package ids formats and parses the opaque identifiers users see: subscriptions "sub_...",
// deliveries "dlv_...". Deliveries are bigint rows inside the database (small, ordered
// indexes on the hot path); subscriptions are random, so they can be created on any replica
// and are not guessable from one another.
package ids

import (
	"crypto/rand"
	"encoding/base32"
	"strconv"
	"strings"
)

const (
	subscriptionPrefix = "sub_"
	deliveryPrefix     = "dlv_"
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
	if !ok || len(rest) != 26 {
		return false
	}
	_, err := lowerBase32.DecodeString(rest)
	return err == nil
}

// FormatDelivery turns a delivery's row id into its public ID.
func FormatDelivery(id int64) string {
	return deliveryPrefix + strconv.FormatInt(id, 36)
}

// ParseDelivery turns a public delivery ID back into the row id; ok is false for anything
// FormatDelivery could not have produced.
func ParseDelivery(s string) (id int64, ok bool) {
	rest, found := strings.CutPrefix(s, deliveryPrefix)
	if !found || rest == "" || len(rest) > 13 || strings.ToLower(rest) != rest {
		return 0, false
	}
	id, err := strconv.ParseInt(rest, 36, 64)
	if err != nil || id <= 0 {
		return 0, false
	}
	return id, true
}
