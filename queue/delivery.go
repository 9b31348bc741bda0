package queue

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/cleanup"
)

// Deliverer is the delivery seam (DESIGN.md): the scheduler hands it one
// batch of recipients of one message for one transport and next hop, and
// gets back a status per recipient, as an LMTP server reports them. The
// delivery agents (package mda) implement it; Deliver may be called from
// many goroutines at once, up to the destinations' concurrency windows.
//
// Deliver returns one Result per Delivery.Recipients entry, in the same
// order. A missing Result counts as deferred; a panic in Deliver defers
// the whole batch and does not stop the scheduler. ctx ends when the
// scheduler is stopped hard (Stop's context expired).
type Deliverer interface {
	Deliver(ctx context.Context, d *Delivery) []Result
}

// DelivererFunc adapts a function to Deliverer.
type DelivererFunc func(ctx context.Context, d *Delivery) []Result

// Deliver calls f.
func (f DelivererFunc) Deliver(ctx context.Context, d *Delivery) []Result { return f(ctx, d) }

// Delivery is one delivery request: Postfix's queue manager to delivery
// agent request (one message, one destination, at most
// transport_destination_recipient_limit recipients).
type Delivery struct {
	QueueID string
	// Envelope is the message's envelope as queued. Read only.
	Envelope *cleanup.Envelope
	// Transport and Nexthop are the destination (Router).
	Transport, Nexthop string
	Recipients         []Recipient
	// Size is the content length in bytes.
	Size int64
	// Open returns a reader of the message content (CRLF lines, as
	// queued); the caller must close it. It may be called more than once.
	Open func() (io.ReadCloser, error)
}

// Recipient is one recipient in a Delivery.
type Recipient struct {
	// Index is the recipient's position in Envelope.Recipients.
	Index int
	// Addr is where to deliver: the queued address, or the REDIRECT
	// target (Envelope.Redirect) when there is one.
	Addr string
	cleanup.Recipient
}

// Result is the outcome of one recipient's delivery attempt.
type Result struct {
	// Outcome is Delivered, Delayed or Failed (Pending counts as Delayed).
	Outcome Outcome
	// DSN is the RFC 3463 status ("2.0.0", "4.4.1", "5.1.1"); empty means
	// 2.0.0, 4.0.0 or 5.0.0 by Outcome.
	DSN string
	// Action overrides the RFC 3464 action ("relayed", "expanded").
	Action string
	// Relay is where it went ("mx.example.org[192.0.2.1]:25", "local");
	// empty logs as relay=none.
	Relay string
	// Reason is the logged and reported text ("250 2.0.0 Ok: queued as
	// X", "connect to ...: Connection refused").
	Reason string
	// Site marks a failure of the destination rather than of the
	// recipient (connection refused, greeting or HELO rejected): it is the
	// negative concurrency feedback of spec §7.5 and may declare the
	// destination dead. A 4xx or 5xx to RCPT is not a site failure.
	Site bool
	// Conn and Xfer split the attempt's time into connection setup and
	// transmission (the c and d of delays=a/b/c/d); zero leaves the whole
	// Deliver call in d.
	Conn, Xfer time.Duration
}

// Router maps a recipient to its destination: transport and next hop
// (Postfix's trivial-rewrite resolve and transport_maps). Package mda
// builds the real one. An error defers the recipient with the error's
// text, or bounces it when the error is a *RouteError with Permanent set.
type Router interface {
	Route(ctx context.Context, env *cleanup.Envelope, rcpt string) (Route, error)
}

// Route is a destination: transport and next hop, as transport_maps
// writes them ("smtp:[mx.example.org]:25" is Transport "smtp", Nexthop
// "[mx.example.org]:25").
type Route struct {
	Transport, Nexthop string
}

// RouteError is a routing failure with a DSN status.
type RouteError struct {
	Permanent bool
	DSN       string
	Reason    string
}

func (e *RouteError) Error() string { return e.Reason }

// RouterFunc adapts a function to Router.
type RouterFunc func(ctx context.Context, env *cleanup.Envelope, rcpt string) (Route, error)

// Route calls f.
func (f RouterFunc) Route(ctx context.Context, env *cleanup.Envelope, rcpt string) (Route, error) {
	return f(ctx, env, rcpt)
}

// DomainRouter sends every recipient to transport with the recipient's
// domain as next hop (Postfix's default for remote mail, without MX
// lookups); a recipient without a domain goes to next hop "localhost".
// For tests and simple relays.
func DomainRouter(transport string) Router {
	return RouterFunc(func(_ context.Context, _ *cleanup.Envelope, rcpt string) (Route, error) {
		host := "localhost"
		if d := address.Split(rcpt).Domain; d != "" {
			host = strings.ToLower(d)
		}
		return Route{Transport: transport, Nexthop: host}, nil
	})
}

// NoticeKind is the kind of delivery status notification due.
type NoticeKind uint8

const (
	// FailureNotice: recipients failed permanently or expired
	// (maximal_queue_lifetime, bounce_queue_lifetime): a non-delivery
	// notice.
	FailureNotice NoticeKind = iota + 1
	// DelayNotice: the message is still deferred delay_warning_time after
	// arrival: a delay warning, sent once per message.
	DelayNotice
	// SuccessNotice: recipients delivered whose NOTIFY includes SUCCESS.
	SuccessNotice
)

var noticeNames = [...]string{"", "failure", "delay", "success"}

func (k NoticeKind) String() string {
	if int(k) < len(noticeNames) {
		return noticeNames[k]
	}
	return "NoticeKind(?)"
}

// Notice asks for a delivery status notification about some recipients
// of a message.
type Notice struct {
	Kind    NoticeKind
	QueueID string
	// Envelope and Statuses are the message's (Statuses indexed like
	// Envelope.Recipients, with this pass's outcomes).
	Envelope *cleanup.Envelope
	Statuses []Status
	// Recipients are the indexes the notice is about.
	Recipients []int
	// Expired is set when the failures are the expiry of deferred
	// recipients.
	Expired bool
	// Open reads the original content (to return it per RET).
	Open func() (io.ReadCloser, error)
}

// Notifier is the seam to the DSN generator (package bounce, wired by
// the program that composes the parts): the scheduler calls it before it
// removes or defers a message. For a FailureNotice an error keeps the
// message queued and the notice is tried again at the next attempt; for
// the other kinds an error is logged (a delay warning is then retried at
// the next attempt, a success notice is not).
type Notifier interface {
	Notify(ctx context.Context, n *Notice) error
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, n *Notice) error

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, n *Notice) error { return f(ctx, n) }
