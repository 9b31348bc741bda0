package restrictions

import (
	"strconv"
	"strings"
)

// Reply is an SMTP reply: a code, an RFC 3463 enhanced status code and
// text.
type Reply struct {
	Code int    // 4xx or 5xx; 0 means no reply (accept)
	DSN  string // "5.7.1"
	Text string // the text after the DSN
}

// String returns the reply line as it is sent: "554 5.7.1 text".
func (r Reply) String() string {
	if r.Code == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if r.DSN != "" {
		b.WriteByte(' ')
		b.WriteString(r.DSN)
	}
	if r.Text != "" {
		b.WriteByte(' ')
		b.WriteString(r.Text)
	}
	return b.String()
}

// Temporary reports whether the reply is a 4xx.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// parseReply splits a formatted "CODE DSN text" line.
func parseReply(s string) Reply {
	var r Reply
	if len(s) < 3 {
		return r
	}
	r.Code, _ = strconv.Atoi(s[:3])
	rest := strings.TrimPrefix(s[3:], " ")
	dsn, text, _ := strings.Cut(rest, " ")
	r.DSN = dsn
	r.Text = text
	return r
}

// Effects are the access-table actions that take effect after the
// command is accepted: the SMTP server and cleanup apply them to the
// message (access(5): HOLD, DISCARD, FILTER, REDIRECT, BCC, PREPEND).
type Effects struct {
	Hold     bool     // put the message on hold
	Discard  bool     // accept and throw the message away
	Filter   string   // content filter "transport:destination"; the last FILTER wins
	Redirect string   // send to this address instead of all recipients; the last wins
	BCC      []string // add these recipients
	Prepend  []string // add these header lines, in order, above the Received: header
}

func (e *Effects) merge(o Effects) {
	e.Hold = e.Hold || o.Hold
	e.Discard = e.Discard || o.Discard
	if o.Filter != "" {
		e.Filter = o.Filter
	}
	if o.Redirect != "" {
		e.Redirect = o.Redirect
	}
	e.BCC = append(e.BCC, o.BCC...)
	e.Prepend = append(e.Prepend, o.Prepend...)
}

// LogEntry is one event Postfix's smtpd logs while evaluating
// restrictions: Kind is "reject", "reject_warning", "warn", "info",
// "hold", "discard", "filter", "redirect", "bcc", "permit" or "hangup";
// Text is what follows "from name[addr]: " in the log line.
type LogEntry struct {
	Kind string
	Text string
}

// Decision is the outcome of one check.
type Decision struct {
	// Reply is the rejection, or the zero Reply when the command is
	// accepted.
	Reply Reply
	// Disconnect: the reply is 421 or 521, after which the server
	// closes the connection.
	Disconnect bool
	// Hangup: drop the connection without a reply (the HANGUP action).
	Hangup bool
	// Effects fired during this check.
	Effects Effects
	// Log holds the events to log, in order.
	Log []LogEntry
	// Warnings are configuration problems met while evaluating (unknown
	// restriction names, bad table entries), as Postfix's "warning:"
	// lines; they are also sent to Config.Logger.
	Warnings []string
	// Txn is the transaction state to carry into the next check of the
	// same session (Snapshot.Txn).
	Txn Txn
}

// Accepted reports whether the command passed.
func (d Decision) Accepted() bool { return d.Reply.Code == 0 && !d.Hangup }

// Deferral is a saved defer_if_permit or defer_if_reject reply.
type Deferral struct {
	Reply Reply
	class errClass
}

// Txn is the state smtpd keeps between the stages of one session: the
// defer_if_permit deferrals raised by the client, HELO and sender stages
// (needed when smtpd_delay_reject = no evaluates each at its own command),
// and whether the transaction was DISCARDed or put on HOLD.
type Txn struct {
	ClientDefer *Deferral
	HeloDefer   *Deferral
	SenderDefer *Deferral
	Discard     bool
	Hold        bool
}

// Reset forgets the transaction (after RSET or the end of a message),
// keeping what belongs to the session: the client and HELO deferrals.
func (t *Txn) Reset() {
	t.SenderDefer = nil
	t.Discard = false
	t.Hold = false
}
