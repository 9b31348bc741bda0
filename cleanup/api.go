package cleanup

import (
	"context"
	"io"
	"time"

	"github.com/postkit-mail/postkit/restrictions"
)

// Recipient is one envelope recipient.
type Recipient struct {
	// Addr is the address in internal form (unquoted local part).
	Addr string
	// Original is the address as the client gave it, before any
	// rewriting: Postfix's orig_to (enable_original_recipient).
	Original string
	// Notify and ORCPT are the RFC 3461 DSN parameters: NOTIFY keywords
	// ("NEVER", or "SUCCESS", "FAILURE", "DELAY") and ORCPT as given
	// ("rfc822;user@example.com").
	Notify []string
	ORCPT  string
}

// ClientInfo describes where a message came from, for log lines, the
// header rewriting context and the milters.
type ClientInfo struct {
	Name string // verified host name, or "unknown"; "localhost" for local submission
	Addr string // IP address, or "127.0.0.1" for local submission
	Port int
	Helo string
	// Proto is the protocol name as in Received: (SMTP, ESMTP, ESMTPS,
	// ESMTPA, ESMTPSA, LMTP...), or "" for local submission.
	Proto        string
	SASLMethod   string
	SASLUsername string
	SASLSender   string
	// ServerAddr is the address the client connected to.
	ServerAddr string
}

// Envelope is what cleanup hands the queue at Commit.
type Envelope struct {
	QueueID    string
	Arrival    time.Time
	Sender     string // after rewriting; "" is the null sender
	Recipients []Recipient
	// Size is the size of the queued content in bytes.
	Size     int64
	Body     string // BODY= (7BIT, 8BITMIME, BINARYMIME) or ""
	Ret      string // RET= (FULL, HDRS) or ""
	EnvID    string // ENVID=
	SMTPUTF8 bool
	// Hold: the message goes to the hold queue (HOLD action).
	Hold       bool
	HoldReason string
	// Filter is the content filter "transport:destination" (FILTER
	// action), overriding content_filter.
	Filter string
	// Redirect, when set, is where every recipient is delivered instead
	// (REDIRECT action; Postfix's redirect_to record): the queue applies
	// it, as Postfix's qmgr does, so the recipients keep their addresses
	// here.
	Redirect string
	// MessageID is the Message-Id header value ("<x@y>"), "" if none.
	MessageID string
	Client    ClientInfo
}

// Store is where finished messages go: the queue (issue 6) implements
// it; DirStore is a simple one for tests and small programs.
type Store interface {
	// Create starts a new queue file. The queue ID must be known at once:
	// the SMTP server logs it and puts it in Received:.
	Create(ctx context.Context, arrival time.Time) (File, error)
}

// File is one queue file being written. Commit makes it durable (file and
// directory fsynced) before it returns nil; Abort removes it. Exactly one
// of them is called.
type File interface {
	ID() string
	io.Writer
	Commit(ctx context.Context, env *Envelope) error
	Abort() error
}

// Input is what a message source (the SMTP server, pickup) knows when it
// opens a message.
type Input struct {
	Sender     string
	Recipients []Recipient
	// FullName is the sender's full name (sendmail -F), used in a From:
	// header cleanup adds (header_from_format).
	FullName string
	// ExtractRecipients: take recipients from To:/Cc:/Bcc: (or the
	// Resent- ones when there are Resent- headers), as sendmail -t does.
	ExtractRecipients bool
	// Local: the message was submitted locally (sendmail, pickup), so
	// header addresses are rewritten in the local context.
	Local  bool
	Client ClientInfo
	// Effects are the actions the SMTP restrictions decided (HOLD,
	// DISCARD, FILTER, REDIRECT, BCC). PREPEND lines are already in the
	// content, written by the server.
	Effects  restrictions.Effects
	Size     int64 // SIZE= as announced
	Body     string
	Ret      string
	EnvID    string
	SMTPUTF8 bool
	// Arrival is the arrival time; zero means now.
	Arrival time.Time
}

// RejectError is returned by Message.Commit when the message was refused
// (a REJECT in header or body checks, too many hops, a milter reject) or
// deferred (4xx: alias expansion error, a table lookup error): nothing was
// queued, and Reply is what an SMTP client should be told.
type RejectError struct {
	Reply restrictions.Reply
}

func (e *RejectError) Error() string { return "cleanup: message not accepted: " + e.Reply.String() }
