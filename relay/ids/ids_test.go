package ids_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/ids"
)

func deliveries(t *testing.T, legacyMax int64) *ids.Deliveries {
	t.Helper()
	d, err := ids.NewDeliveries([]byte("0123456789abcdef"), legacyMax)
	require.NoError(t, err)
	return d
}

func TestDeliveryRoundTrip(t *testing.T) {
	d := deliveries(t, 0)
	for _, id := range []int64{1, 35, 36, 123456789, 1<<63 - 1} {
		s := d.Format(id)
		require.Len(t, s, 30, s)
		require.True(t, strings.HasPrefix(s, "dlv_"), s)
		got, ok := d.Parse(s)
		require.True(t, ok, id)
		require.Equal(t, id, got)
	}
}

// TestDeliveryIDsHideOrder: the IDs of consecutive rows are neither ordered nor alike, so
// two deliveries tell a tenant nothing about how many were made between them.
func TestDeliveryIDsHideOrder(t *testing.T) {
	d := deliveries(t, 0)
	var prev string
	ascending, seen := 0, map[string]bool{}
	for id := int64(1000); id < 1200; id++ {
		s := d.Format(id)
		require.False(t, seen[s])
		seen[s] = true
		if prev != "" {
			if s > prev {
				ascending++
			}
			same := 0
			for i := 4; i < len(s); i++ {
				if s[i] == prev[i] {
					same++
				}
			}
			require.Less(t, same, 8, "%s and %s share %d characters", prev, s, same)
		}
		prev = s
	}
	// Random order: about half of the steps go up. Sequential IDs would go up 199 times.
	require.InDelta(t, 100, ascending, 40)

	other, err := ids.NewDeliveries([]byte("fedcba9876543210"), 0)
	require.NoError(t, err)
	require.NotEqual(t, d.Format(1), other.Format(1), "another installation's key gives other IDs")
	_, ok := other.Parse(d.Format(1))
	require.False(t, ok, "an ID of another installation does not parse")
}

func TestParseDeliveryRefuses(t *testing.T) {
	d := deliveries(t, 1000)
	valid := d.Format(42)
	garbage := "dlv_" + strings.Repeat("a", 26)
	// The same 16 bytes with the last character's unused bits set: not the canonical form.
	last := strings.IndexByte("0123456789abcdefghjkmnpqrstvwxyz", valid[len(valid)-1])
	nonCanonical := valid[:len(valid)-1] + string("0123456789abcdefghjkmnpqrstvwxyz"[last|1])
	if nonCanonical == valid {
		nonCanonical = valid[:len(valid)-1] + string("0123456789abcdefghjkmnpqrstvwxyz"[last|2])
	}
	for _, s := range []string{"", "dlv_", "dlv_0", "dlv_-1", "dlv_ABC", "sub_1", "dlv_zzzzzzzzzzzzzz", "dlv_1x!",
		garbage, strings.ToUpper(valid[:4]) + valid[4:], "dlv_" + strings.ToUpper(valid[4:]), valid + "a", valid[:29],
		nonCanonical, "dlv_" + strconv.FormatInt(1001, 36), "sub_" + valid[4:]} {
		_, ok := d.Parse(s)
		require.False(t, ok, s)
	}
}

func TestParseLegacyDelivery(t *testing.T) {
	d := deliveries(t, 1000)
	for _, id := range []int64{1, 35, 36, 999, 1000} {
		got, ok := d.Parse("dlv_" + strconv.FormatInt(id, 36))
		require.True(t, ok, id)
		require.Equal(t, id, got)
	}
	_, ok := deliveries(t, 0).Parse("dlv_1")
	require.False(t, ok, "no legacy IDs on an installation that began with the random form")
}

func TestNewDeliveriesRefusesBadKeys(t *testing.T) {
	for _, key := range [][]byte{nil, make([]byte, 15), make([]byte, 32)} {
		_, err := ids.NewDeliveries(key, 0)
		require.Error(t, err, len(key))
	}
}

// TestLoad reads the key the migration wrote, the same for every reader of the schema, and
// bounds the old form by the deliveries that existed when it ran.
func TestLoad(t *testing.T) {
	db, _ := relaytest.Open(t, relaytest.Empty)
	ctx := context.Background()
	_, err := ids.Load(ctx, db.DB, outbox.DefaultSchema)
	require.Error(t, err, "no schema yet")
	_, err = outbox.Migrate(ctx, db.DB, outbox.MigrateOptions{})
	require.NoError(t, err)

	a, err := ids.Load(ctx, db.DB, outbox.DefaultSchema)
	require.NoError(t, err)
	b, err := ids.Load(ctx, db.DB, outbox.DefaultSchema)
	require.NoError(t, err)
	require.Equal(t, a.Format(7), b.Format(7))
	_, ok := a.Parse("dlv_1")
	require.False(t, ok, "a fresh schema had no deliveries: no old IDs")

	var key string
	require.NoError(t, db.Get(&key, `SELECT value FROM relay.settings WHERE name = 'delivery_id_key'`))
	require.Len(t, key, 32)
	require.NotEqual(t, strings.Repeat("0", 32), key)
}

func TestSubscriptionID(t *testing.T) {
	a, b := ids.NewSubscriptionID(), ids.NewSubscriptionID()
	require.NotEqual(t, a, b)
	require.True(t, ids.ValidSubscriptionID(a), a)
	require.Len(t, a, 30)
	for _, s := range []string{"", "sub_", "sub_short", "dlv_" + a[4:], a + "x", "sub_UUUUUUUUUUUUUUUUUUUUUUUUUU"} {
		require.False(t, ids.ValidSubscriptionID(s), s)
	}
}

func FuzzParseDelivery(f *testing.F) {
	d, err := ids.NewDeliveries([]byte("0123456789abcdef"), 1<<40)
	require.NoError(f, err)
	f.Add(d.Format(1))
	f.Add("dlv_1")
	f.Add("dlv_" + strings.Repeat("z", 26))
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := d.Parse(s)
		if !ok {
			return
		}
		require.Positive(t, id)
		if len(s) == 30 {
			require.Equal(t, s, d.Format(id), "one spelling per delivery")
		}
	})
}
