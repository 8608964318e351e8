package ids

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDeliveryRoundTrip(t *testing.T) {
	for _, id := range []int64{1, 35, 36, 123456789, 1<<63 - 1} {
		got, ok := ParseDelivery(FormatDelivery(id))
		require.True(t, ok, id)
		require.Equal(t, id, got)
	}
}

func TestParseDeliveryRefuses(t *testing.T) {
	for _, s := range []string{"", "dlv_", "dlv_0", "dlv_-1", "dlv_ABC", "sub_1", "dlv_zzzzzzzzzzzzzz", "dlv_1x!"} {
		_, ok := ParseDelivery(s)
		require.False(t, ok, s)
	}
}

func TestSubscriptionID(t *testing.T) {
	a, b := NewSubscriptionID(), NewSubscriptionID()
	require.NotEqual(t, a, b)
	require.True(t, ValidSubscriptionID(a), a)
	require.Len(t, a, 30)
	for _, s := range []string{"", "sub_", "sub_short", "dlv_" + a[4:], a + "x", "sub_UUUUUUUUUUUUUUUUUUUUUUUUUU"} {
		require.False(t, ValidSubscriptionID(s), s)
	}
}
