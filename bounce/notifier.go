package bounce

// The adapter between the queue's scheduler and the notice writer: the
// scheduler asks for a notice (queue.Notifier), Notifier turns the
// queue's envelope and statuses into a Message, writes the notices and
// hands each to a Submitter, which queues it as new mail (Postfix's
// bounce daemon hands its notices to cleanup the same way).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/postkit-mail/postkit/queue"
)

// Submitter queues a notice as a new message: envelope sender
// n.Sender, the one recipient n.Recipient, content n.Data, received
// with BODY=8BITMIME when n.Encoding is Encoding8Bit and with SMTPUTF8
// when n.SMTPUTF8. It returns once the message is durably queued.
// CleanupSubmitter implements it (and Opener) over package cleanup.
type Submitter interface {
	Submit(ctx context.Context, n *Notice) error
}

// SubmitterFunc adapts a function to Submitter.
type SubmitterFunc func(ctx context.Context, n *Notice) error

// Submit calls f.
func (f SubmitterFunc) Submit(ctx context.Context, n *Notice) error { return f(ctx, n) }

// Notifier implements queue.Notifier with Settings: it writes the
// notices a queue.Notice asks for and submits them.
type Notifier struct {
	Settings *Settings
	Submit   Submitter
	// Logger receives a line per notice queued; nil means
	// slog.Default().
	Logger *slog.Logger
}

var _ queue.Notifier = (*Notifier)(nil)

// NewNotifier returns a Notifier writing notices with s and queueing them
// through sub.
func NewNotifier(s *Settings, sub Submitter) *Notifier {
	return &Notifier{Settings: s, Submit: sub}
}

// Notify writes the notices due for qn and submits each. An error leaves
// the scheduler to try again: for a non-delivery notice the original
// stays queued until a later attempt succeeds. Notices submitted before
// the error are not taken back, so a retry may send one twice (Postfix's
// bounce daemon has the same window).
func (nf *Notifier) Notify(ctx context.Context, qn *queue.Notice) error {
	if nf.Settings == nil || nf.Submit == nil {
		return errors.New("bounce: the notifier needs Settings and a Submitter")
	}
	var kind Kind
	switch qn.Kind {
	case queue.FailureNotice:
		kind = Failure
	case queue.DelayNotice:
		kind = Delay
	case queue.SuccessNotice:
		kind = Success
	default:
		return fmt.Errorf("%w: message %s: notice kind %v", ErrBadMessage, qn.QueueID, qn.Kind)
	}
	m, err := messageOf(kind, qn)
	if err != nil {
		return err
	}
	if ra, ok := m.Content.(*lazyContent); ok {
		defer ra.Close()
	}
	log := nf.Logger
	if log == nil {
		log = slog.Default()
	}
	if o, ok := nf.Submit.(Opener); ok {
		// The notices carry their own queue IDs (cleanup.go).
		return nf.notifyOpened(ctx, o, kind, qn.QueueID, m, log)
	}
	notices, err := nf.Settings.Notices(kind, m)
	if err != nil {
		return fmt.Errorf("bounce: writing the %s notice for %s: %w", kind, qn.QueueID, err)
	}
	for i := range notices {
		n := &notices[i]
		if err := nf.Submit.Submit(ctx, n); err != nil {
			return fmt.Errorf("bounce: queueing the %s notice for %s to <%s>: %w", kind, qn.QueueID, n.Recipient, err)
		}
		log.Info(fmt.Sprintf("%s: sender %s notification to <%s> (%s)", qn.QueueID, kind, n.Recipient, n.Class),
			"queue_id", qn.QueueID)
	}
	return nil
}

// messageOf builds the bounce Message for the recipients qn names.
func messageOf(kind Kind, qn *queue.Notice) (*Message, error) {
	env := qn.Envelope
	if env == nil {
		return nil, fmt.Errorf("%w: message %s: no envelope", ErrBadMessage, qn.QueueID)
	}
	m := &Message{
		QueueID:  qn.QueueID,
		Arrival:  env.Arrival,
		Sender:   env.Sender,
		ENVID:    xtextDecode(env.EnvID),
		SMTPUTF8: env.SMTPUTF8,
		Client: Client{Name: env.Client.Name, Addr: env.Client.Addr, HELO: env.Client.Helo,
			Protocol: env.Client.Proto},
		Size: env.Size,
	}
	switch strings.ToUpper(env.Ret) {
	case "FULL":
		m.Ret = RetFull
	case "HDRS":
		m.Ret = RetHdrs
	}
	switch strings.ToUpper(env.Body) {
	case "7BIT":
		m.Encoding = Encoding7Bit
	case "8BITMIME", "BINARYMIME":
		m.Encoding = Encoding8Bit
	}
	for _, i := range qn.Recipients {
		if i < 0 || i >= len(env.Recipients) {
			return nil, fmt.Errorf("%w: message %s: no recipient %d", ErrBadMessage, qn.QueueID, i)
		}
		var st queue.Status
		if i < len(qn.Statuses) {
			st = qn.Statuses[i]
		}
		m.Recipients = append(m.Recipients, recipientOf(kind, env.Recipients[i].Addr, env.Recipients[i].Original,
			env.Recipients[i].ORCPT, env.Recipients[i].Notify, st))
	}
	if m.Size > 0 {
		if qn.Open == nil {
			return nil, fmt.Errorf("%w: message %s: no content opener", ErrBadMessage, qn.QueueID)
		}
		m.Content = &lazyContent{open: qn.Open}
	}
	return m, nil
}

func recipientOf(kind Kind, addr, orig, orcpt string, notify []string, st queue.Status) Recipient {
	r := Recipient{Address: addr, ORCPT: xtextDecode(orcpt), Status: st.DSN, Reason: st.Reason}
	if orig != addr {
		r.Original = orig
	}
	// An unparsable NOTIFY (cleanup checked it at RCPT) counts as none.
	r.Notify, _ = ParseNotify(strings.Join(notify, ","))
	if len(notify) == 0 {
		r.Notify = 0
	}
	// The notice's kind decides the action: a recipient that expired is
	// still "delayed" in its last status but is reported as failed, with
	// its 4.x.x code, as Postfix reports it.
	switch kind {
	case Failure:
		r.Action = Failed
	case Delay:
		r.Action = Delayed
	default:
		r.Action = Delivered
		switch Action(st.Action) {
		case Relayed, Expanded:
			r.Action = Action(st.Action)
		}
	}
	if r.Status == "" {
		r.Status = map[Kind]string{Failure: "5.0.0", Delay: "4.0.0", Success: "2.0.0"}[kind]
	}
	r.RemoteMTA = remoteHost(st.Relay)
	if r.RemoteMTA != "" {
		r.DiagnosticCode = smtpDiagnostic(st.Reason)
	}
	return r
}

// remoteHost is the host name of a relay as the scheduler records it
// ("mx.example.org[192.0.2.1]:25"), or "" for local and none.
func remoteHost(relay string) string {
	switch relay {
	case "", "none", "local", "virtual":
		return ""
	}
	if i := strings.IndexByte(relay, '['); i > 0 {
		return relay[:i]
	}
	if i := strings.IndexByte(relay, '['); i == 0 {
		if j := strings.IndexByte(relay, ']'); j > 0 {
			return relay[1:j]
		}
	}
	return relay
}

// smtpDiagnostic turns the reason text of a remote reply ("host X said:
// 550 5.1.1 no such user (in reply to RCPT TO command)", or smtp(8)'s
// "host X refused to talk to me: 421 ..." for a refused greeting) into the
// Diagnostic-Code value Postfix writes, "smtp; 550 5.1.1 no such user";
// other reasons get "" (X-Postfix; reason).
func smtpDiagnostic(reason string) string {
	_, reply, ok := strings.Cut(reason, " said: ")
	if !ok {
		_, reply, ok = strings.Cut(reason, " refused to talk to me: ")
	}
	if !ok {
		if len(reason) >= 4 && isDigits(reason[:3]) && (reason[3] == ' ' || reason[3] == '-') {
			reply = reason
		} else {
			return ""
		}
	}
	if i := strings.LastIndex(reply, " (in reply to "); i > 0 {
		reply = reply[:i]
	}
	if len(reply) < 3 || !isDigits(reply[:3]) {
		return ""
	}
	return "smtp; " + reply
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// xtextDecode undoes RFC 3461 4 xtext ("+2B" is '+'); text that is not
// valid xtext is returned as is, since the queue may hold it decoded.
func xtextDecode(s string) string {
	if !strings.Contains(s, "+") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '+' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		if s[i] == '+' {
			return s
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

// lazyContent is an io.ReaderAt over the queue's content opener that
// opens the file only when a notice reads it and reads it front to back
// (the notice writer reads the header, or the whole message, in order),
// so a large original is never held in memory whole. A read behind the
// current position reopens the content.
type lazyContent struct {
	open func() (io.ReadCloser, error)
	rc   io.ReadCloser
	pos  int64
}

func (l *lazyContent) ReadAt(p []byte, off int64) (int, error) {
	if l.rc != nil && off < l.pos {
		l.Close()
	}
	if l.rc == nil {
		rc, err := l.open()
		if err != nil {
			return 0, fmt.Errorf("bounce: opening the original: %w", err)
		}
		l.rc, l.pos = rc, 0
	}
	if off > l.pos {
		n, err := io.CopyN(io.Discard, l.rc, off-l.pos)
		l.pos += n
		if err != nil {
			return 0, err
		}
	}
	n, err := io.ReadFull(l.rc, p)
	l.pos += int64(n)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

// Close closes the content if it is open.
func (l *lazyContent) Close() error {
	if l.rc == nil {
		return nil
	}
	err := l.rc.Close()
	l.rc = nil
	return err
}
