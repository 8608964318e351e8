package deliver

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// outcome is what an attempt means for its delivery.
type outcome string

const (
	outcomeSucceeded outcome = "succeeded" // 2xx: the delivery is done
	outcomeRetry     outcome = "retry"     // failed; another attempt is scheduled
	outcomeFailed    outcome = "failed"    // failed for good: schedule exhausted or permanent
	outcomeGone      outcome = "gone"      // 410: failed, and the subscription is disabled
)

// nextStep decides what follows attempt number attempt (1-based) that failed. schedule[i] is
// the delay after the (i+1)th failure; when it is exhausted the delivery fails for good. A
// Retry-After can only push the next attempt later, never earlier or past the schedule's end.
func nextStep(schedule []time.Duration, attempt int, retryAfter time.Duration) (outcome, time.Duration) {
	if attempt < 1 || attempt > len(schedule) {
		return outcomeFailed, 0
	}
	delay := schedule[attempt-1]
	if retryAfter > delay {
		delay = retryAfter
	}
	return outcomeRetry, delay
}

// maxRetryAfter caps what a receiver can ask for, so a bad header cannot park a delivery
// for years.
const maxRetryAfter = 24 * time.Hour

// parseRetryAfter reads a Retry-After header on a 429 or 503: delta-seconds or an HTTP date.
// Anything else, or another status, gives 0.
func parseRetryAfter(status int, value string, now time.Time) time.Duration {
	if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
		return 0
	}
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(value, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(value); err == nil {
		d = t.Sub(now)
	}
	if d <= 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}
