package mda

import (
	"context"
	"strconv"
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/queue"
)

// The built-in agents: discard(8), error(8) and retry(8). Their texts
// were checked against Postfix 3.7 (mda/oracle_test.go): the reason is
// the next hop of the transport_maps entry ("error:5.1.1 go away" gives
// "dsn=5.1.1, status=bounced (go away)"), the relay is "none".

// Discard returns discard(8): every recipient is reported delivered
// (dsn 2.0.0) with the next hop as the reason, e.g. "discard:gone
// fishing" logs "status=sent (gone fishing)". Postfix's trivial-rewrite
// fills an empty next hop with the recipient's domain, and so does
// Discard when the router left it empty. The message is not read.
func Discard() queue.Deliverer {
	return queue.DelivererFunc(func(ctx context.Context, d *queue.Delivery) []queue.Result {
		out := make([]queue.Result, len(d.Recipients))
		for i, r := range d.Recipients {
			why := d.Nexthop
			if why == "" {
				why = address.Split(r.Addr).Domain
			}
			out[i] = queue.Result{Outcome: queue.Delivered, DSN: "2.0.0", Relay: "none", Reason: why}
		}
		return out
	})
}

// Error returns error(8): every recipient bounces. The next hop is the
// reason, with an optional leading RFC 3463 status ("5.1.1 go away");
// without one, or with one of another class than 5, the status is 5.0.0. An empty next hop gives "Address is
// undeliverable", as Postfix's trivial-rewrite writes for "error:".
func Error() queue.Deliverer { return errorAgent(queue.Failed, "5.0.0") }

// Retry returns retry(8): every recipient is deferred, with the next hop
// as the reason as in Error, and 4.0.0 when it has no status of
// class 4.
func Retry() queue.Deliverer { return errorAgent(queue.Delayed, "4.0.0") }

// Undeliverable is the reason error(8) and retry(8) give for an empty
// next hop.
const Undeliverable = "Address is undeliverable"

func errorAgent(outcome queue.Outcome, def string) queue.Deliverer {
	return queue.DelivererFunc(func(ctx context.Context, d *queue.Delivery) []queue.Result {
		dsn, text := SplitDSN(d.Nexthop, def)
		if dsn[0] != def[0] {
			// "error:4.7.1 x" still bounces and "retry:5.1.1 x" still
			// defers; Postfix then reports the default status with the
			// text (checked against 3.7).
			dsn = def
		}
		if text == "" {
			text = Undeliverable
		}
		return same(len(d.Recipients), queue.Result{Outcome: outcome, DSN: dsn, Relay: "none", Reason: text})
	})
}

// SplitDSN splits "X.Y.Z text" into the RFC 3463 status and the text
// after it (Postfix's dsn_split). A string that does not start with a
// valid status (class 2, 4 or 5, subject 0-999, detail 0-999) gives def
// and the whole string, trimmed.
func SplitDSN(s, def string) (dsn, text string) {
	s = strings.TrimLeft(s, " \t")
	n := dsnLen(s)
	if n == 0 || (n < len(s) && s[n] != ' ' && s[n] != '\t') {
		return def, strings.TrimSpace(s)
	}
	return s[:n], strings.TrimSpace(s[n:])
}

// dsnLen returns the length of the RFC 3463 status at the start of s,
// or 0.
func dsnLen(s string) int {
	if len(s) < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.' {
		return 0
	}
	i := 2
	for part := 0; part < 2; part++ {
		j := i
		for j < len(s) && j-i < 4 && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i || j-i > 3 {
			return 0
		}
		i = j
		if part == 0 {
			if i >= len(s) || s[i] != '.' {
				return 0
			}
			i++
		}
	}
	return i
}

func quote(s string) string { return strconv.Quote(s) }
func itoa(n int) string     { return strconv.Itoa(n) }
