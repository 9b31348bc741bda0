package mda

import (
	"context"
	"log/slog"

	"github.com/postkit-mail/postkit/queue"
)

// Dispatcher is the queue's Deliverer in a whole MTA: it hands each
// delivery request to the agent named by Delivery.Transport, the way
// Postfix's queue manager connects to the master.cf service of that name.
//
// A transport with no agent defers every recipient with Postfix's
// wording (qmgr hands such mail to error(8): "dsn=4.3.0,
// status=deferred (mail transport unavailable)", checked against
// Postfix 3.7), so the mail waits until the configuration is fixed.
//
// Agents must not be changed while Deliver runs; a nil Logger discards.
type Dispatcher struct {
	Agents map[string]queue.Deliverer
	Logger *slog.Logger
}

var _ queue.Deliverer = (*Dispatcher)(nil)

// TransportUnavailable is the reason given for a transport without an
// agent (Postfix's qmgr text).
const TransportUnavailable = "mail transport unavailable"

// Deliver sends d to its transport's agent and returns one Result per
// recipient, in order. Results the agent leaves out come back as
// deferred, so a short answer never loses a recipient.
func (d *Dispatcher) Deliver(ctx context.Context, del *queue.Delivery) []queue.Result {
	agent := d.Agents[del.Transport]
	if agent == nil {
		if d.Logger != nil {
			d.Logger.Warn("no delivery agent for transport "+quote(del.Transport), "queue_id", del.QueueID)
		}
		return same(len(del.Recipients), queue.Result{Outcome: queue.Delayed, DSN: "4.3.0", Reason: TransportUnavailable})
	}
	res := agent.Deliver(ctx, del)
	if len(res) == len(del.Recipients) {
		return res
	}
	if d.Logger != nil {
		d.Logger.Warn("delivery agent answered for "+itoa(len(res))+" of "+itoa(len(del.Recipients))+" recipients",
			"queue_id", del.QueueID, "transport", del.Transport)
	}
	out := make([]queue.Result, len(del.Recipients))
	for i := range out {
		if i < len(res) {
			out[i] = res[i]
		} else {
			out[i] = queue.Result{Outcome: queue.Delayed, DSN: "4.3.0", Reason: "delivery agent gave no status"}
		}
	}
	return out
}

// same returns n copies of r.
func same(n int, r queue.Result) []queue.Result {
	out := make([]queue.Result, n)
	for i := range out {
		out[i] = r
	}
	return out
}
