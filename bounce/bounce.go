package bounce

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Action is what happened to a recipient, as RFC 3464 2.3.3 names it.
type Action string

// The actions. Failed recipients go into non-delivery notices, delayed
// ones into delay warnings, and the other three into success notices.
const (
	Failed    Action = "failed"
	Delayed   Action = "delayed"
	Delivered Action = "delivered"
	Relayed   Action = "relayed"
	Expanded  Action = "expanded"
)

// Notify is a recipient's DSN NOTIFY parameter (RFC 3461 4.1) as a set of
// flags. The zero value means the client gave none, which RFC 3461 says to
// treat as FAILURE,DELAY.
type Notify uint8

// The NOTIFY keywords.
const (
	NotifyNever Notify = 1 << iota
	NotifySuccess
	NotifyFailure
	NotifyDelay
)

// ParseNotify reads a NOTIFY value such as "SUCCESS,FAILURE" (case does
// not matter). NEVER must stand alone (RFC 3461 4.1).
func ParseNotify(s string) (Notify, error) {
	var n Notify
	for w := range strings.SplitSeq(s, ",") {
		switch strings.ToUpper(strings.TrimSpace(w)) {
		case "NEVER":
			n |= NotifyNever
		case "SUCCESS":
			n |= NotifySuccess
		case "FAILURE":
			n |= NotifyFailure
		case "DELAY":
			n |= NotifyDelay
		default:
			return 0, fmt.Errorf("bounce: NOTIFY %q: unknown keyword %q", s, w)
		}
	}
	if n&NotifyNever != 0 && n != NotifyNever {
		return 0, fmt.Errorf("bounce: NOTIFY %q: NEVER combined with other keywords", s)
	}
	return n, nil
}

// has says whether the recipient asked for notices of kind k.
func (n Notify) has(k Notify) bool {
	if n == 0 {
		return k == NotifyFailure || k == NotifyDelay
	}
	return n&k != 0
}

// Ret is the DSN RET parameter of MAIL FROM (RFC 3461 4.3).
type Ret uint8

// The RET values; RetDefault is "not given", treated like RetFull.
const (
	RetDefault Ret = iota
	RetFull
	RetHdrs
)

// Encoding is the BODY parameter the original was received with.
type Encoding uint8

// The body types: EncodingNone when the client declared none.
const (
	EncodingNone Encoding = iota
	Encoding7Bit
	Encoding8Bit
)

// Client is the SMTP client that sent the original message. Postfix 3.7
// does not put it into its notices (it writes no Received-From-MTA
// field); Settings.ReceivedFromMTA adds the field.
type Client struct {
	Name     string // verified host name, or "unknown"
	Addr     string // IP address
	HELO     string
	Protocol string // SMTP, ESMTP, ...
}

// Recipient is one recipient's result.
type Recipient struct {
	// Address is the final recipient address, in internal (unquoted) form.
	Address string
	// Original is the address before aliasing or rewriting. When it
	// differs from Address the text says "(expanded from <Original>)".
	Original string
	// ORCPT is the DSN original recipient ("rfc822;user@example.com",
	// RFC 3461 4.2), already xtext-decoded. When empty, Original (or
	// Address) is used with type rfc822, as Postfix records it.
	ORCPT string
	// Notify is the recipient's NOTIFY parameter.
	Notify Notify
	// Action is what happened.
	Action Action
	// Status is the RFC 3463 status code, "5.1.1".
	Status string
	// RemoteMTA is the host name or address of the server that answered,
	// empty for local delivery ("dns; " is added).
	RemoteMTA string
	// DiagnosticCode is "type; text", "smtp; 550 5.1.1 user unknown".
	// When empty, "X-<mail_name>; Reason" is written, as Postfix does.
	DiagnosticCode string
	// Reason is the text shown to people: "host mx.example.com[192.0.2.1]
	// said: 550 5.1.1 user unknown (in reply to RCPT TO command)".
	Reason string
}

// Message is the original message the notices are about.
type Message struct {
	// QueueID is the original's queue ID (X-Postfix-Queue-ID and the
	// MIME boundary).
	QueueID string
	// Arrival is when the original was received (Arrival-Date; delay
	// warnings add maximal_queue_lifetime for Will-Retry-Until).
	Arrival time.Time
	// Sender is the envelope sender in internal form; "" is the null
	// sender.
	Sender string
	// ENVID is the DSN envelope ID (RFC 3461 4.4), xtext-decoded.
	ENVID string
	// Ret is the DSN RET parameter.
	Ret Ret
	// SMTPUTF8 says the original was received with SMTPUTF8 (RFC 6531);
	// its notices use RFC 6533's message/global types.
	SMTPUTF8 bool
	// Encoding is the original's BODY type.
	Encoding Encoding
	// Client is the SMTP client that sent the original.
	Client Client
	// Recipients are the results; each notice picks the ones with its
	// actions.
	Recipients []Recipient
	// Content is the original message (headers and body, LF or CRLF
	// lines) and Size its length in bytes. Content may be nil when Size
	// is 0.
	Content io.ReaderAt
	Size    int64
}

// Kind is the kind of notice.
type Kind uint8

// The kinds of notice: which recipients they report and which template
// they take.
const (
	Failure Kind = iota // failed recipients: failure_template
	Delay               // delayed recipients: delay_template
	Success             // delivered, relayed, expanded: success_template
)

func (k Kind) String() string {
	switch k {
	case Failure:
		return "non-delivery"
	case Delay:
		return "delay"
	case Success:
		return "success"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Notice is one notification message to be queued.
type Notice struct {
	// Kind of notice.
	Kind Kind
	// Class says who it is for: "sender" for the original sender, else
	// the notify_classes class of the postmaster copy ("bounce",
	// "2bounce", "delay").
	Class string
	// Sender is the envelope sender: "" (the null sender, RFC 3464 2)
	// for notices to the sender, double_bounce_sender@myorigin for
	// postmaster copies, so a copy that fails is dropped instead of
	// bouncing again.
	Sender string
	// Recipient is the envelope recipient.
	Recipient string
	// SMTPUTF8 says the notice must be sent with SMTPUTF8.
	SMTPUTF8 bool
	// Encoding is the notice's body type, to queue it with (BODY=8BITMIME
	// for Encoding8Bit), as Postfix queues its notices: a notice that
	// bounces in turn is then returned with the right labels.
	Encoding Encoding
	// Data is the complete message, headers and body, with CRLF lines.
	Data []byte
}

// ErrBadMessage is wrapped by errors about the input.
var ErrBadMessage = errors.New("bounce: bad input")
