package deliver

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNextStep(t *testing.T) {
	schedule := []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour}
	tests := []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		want       outcome
		wantDelay  time.Duration
	}{
		{"FirstFailureWaitsOneMinute", 1, 0, outcomeRetry, time.Minute},
		{"FourthFailureWaitsAnHour", 4, 0, outcomeRetry, time.Hour},
		{"FifthFailureIsFinal", 5, 0, outcomeFailed, 0},
		{"ManualRetryPastTheScheduleIsFinal", 9, 0, outcomeFailed, 0},
		{"RetryAfterLongerWins", 1, 3 * time.Minute, outcomeRetry, 3 * time.Minute},
		{"RetryAfterShorterIsIgnored", 2, 10 * time.Second, outcomeRetry, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, delay := nextStep(schedule, tt.attempt, tt.retryAfter)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.wantDelay, delay)
		})
	}
	t.Run("EmptyScheduleNeverRetries", func(t *testing.T) {
		got, _ := nextStep(nil, 1, 0)
		require.Equal(t, outcomeFailed, got)
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		status int
		value  string
		want   time.Duration
	}{
		{"Seconds429", 429, "120", 2 * time.Minute},
		{"Seconds503", 503, " 7 ", 7 * time.Second},
		{"HTTPDate", 503, now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"PastDate", 429, now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"IgnoredOn500", 500, "120", 0},
		{"Garbage", 429, "soon", 0},
		{"Negative", 429, "-5", 0},
		{"Capped", 429, "999999999", maxRetryAfter},
		{"Empty", 429, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, parseRetryAfter(tt.status, tt.value, now))
		})
	}
}
