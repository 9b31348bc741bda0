package queue

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// retryDelay is the wait before the next attempt of a message that was
// just deferred (spec §7.4, Postfix qmgr_active.c): its age, clamped to
// [minimal_backoff_time, maximal_backoff_time]. Retrying after "as long
// as it has waited so far" makes the attempts come at about twice the
// message's age each time: 0, 5, 10, 20, 40, 80 minutes, then every
// maximal_backoff_time.
func retryDelay(arrival, now time.Time, minBackoff, maxBackoff time.Duration) time.Duration {
	d := now.Sub(arrival)
	if maxBackoff < minBackoff {
		maxBackoff = minBackoff
	}
	return min(max(d, minBackoff), maxBackoff)
}

// lifetime is how long a message may stay queued: maximal_queue_lifetime,
// or bounce_queue_lifetime (capped at the former) for mail from the null
// sender, such as a bounce (spec §7.4).
func lifetime(sender string, maxLife, bounceLife time.Duration) time.Duration {
	if sender == "" {
		return min(bounceLife, maxLife)
	}
	return maxLife
}

// formatDelay writes a delay as Postfix's delivery status lines do (spec
// §8.7): two significant digits, at most two decimals
// (delay_logging_resolution_limit), no trailing zeros, whole seconds from
// 10 up.
func formatDelay(d time.Duration) string {
	x := d.Seconds()
	if x < 0 {
		x = 0
	}
	if x >= 10 {
		return strconv.FormatInt(int64(math.Round(x)), 10)
	}
	prec := 2
	if x >= 1 {
		prec = 1
	}
	s := strconv.FormatFloat(x, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
