package cleanup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/contentcheck"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/rewrite"
)

// Config is the typed configuration of Cleanup. The zero value works:
// no rewriting, no checks, Postfix's defaults for the limits and header
// rules. FromConfig fills it from main.cf.
type Config struct {
	// Hostname is $myhostname, used in the Message-Id cleanup adds.
	Hostname string
	// Rewriter rewrites envelope and header addresses (canonical form,
	// canonical maps, masquerading, virtual aliases). Nil leaves
	// addresses as given.
	Rewriter *rewrite.Rewriter
	// Checks are header_checks, body_checks and the MIME limits. Nil
	// means no tables and default limits; the message is still split
	// into headers by contentcheck's walker.
	Checks *contentcheck.Config

	// HopcountLimit is hopcount_limit: a message with this many
	// Received: headers or more is refused (5.4.0). Zero means 50.
	HopcountLimit int
	// AlwaysAddMissingHeaders is always_add_missing_headers: add
	// Message-Id, Date, From (and undisclosed_recipients_header) to
	// remote mail too, not only in the header rewriting context.
	AlwaysAddMissingHeaders bool
	// DropHeaders is message_drop_headers (header names, any case). Nil
	// means Postfix's default: bcc, content-length, resent-bcc,
	// return-path. An empty non-nil slice drops nothing.
	DropHeaders []string
	// UndisclosedRecipientsHeader is undisclosed_recipients_header: a
	// whole header line added when there is no To: or Cc: (empty in
	// Postfix 3.x, so nothing is added).
	UndisclosedRecipientsHeader string
	// HeaderFromFormat is header_from_format: "standard" (the default,
	// "From: Full Name <addr>") or "obsolete" ("From: addr (Full Name)").
	HeaderFromFormat string
	// NoOriginalRecipient turns enable_original_recipient off:
	// duplicates are then found by final address only (the original
	// address is still recorded, as Postfix's queue file does).
	NoOriginalRecipient bool
	// LongQueueIDs is enable_long_queue_ids: the Message-Id cleanup adds
	// is <QUEUEID@$myhostname> rather than <TIMESTAMP.QUEUEID@...>.
	LongQueueIDs bool

	// AlwaysBCC is always_bcc.
	AlwaysBCC string
	// SenderBCCMaps and RecipientBCCMaps are sender_bcc_maps and
	// recipient_bcc_maps.
	SenderBCCMaps, RecipientBCCMaps maps.List
	// ContentFilter is content_filter, the default FILTER.
	ContentFilter string

	// NoAddressMappings, NoHeaderBodyChecks and NoMilters are
	// receive_override_options no_address_mappings (no canonical,
	// masquerade, virtual alias or automatic BCC mapping),
	// no_header_body_checks and no_milters.
	NoAddressMappings, NoHeaderBodyChecks, NoMilters bool

	// LocalHeaderRewriteClients is local_header_rewrite_clients: the SMTP
	// clients whose mail gets header rewriting in the local context. Nil
	// means none (local submission always does).
	LocalHeaderRewriteClients *HeaderRewriteClients
	// RemoteHeaderRewriteDomain is remote_header_rewrite_domain: when
	// set, other clients' header addresses are completed with this
	// domain (and missing headers are added).
	RemoteHeaderRewriteDomain string

	// MessageSizeLimit is message_size_limit applied to the content
	// cleanup receives (552 5.3.4 when passed); 0 means no limit. The SMTP
	// server enforces its own limit before cleanup sees the data.
	MessageSizeLimit int64

	// Milters (smtpd_milters, non_smtpd_milters) and DKIM signing and
	// verification run on each message (see MilterConfig). Nil: none.
	Milters *MilterConfig
	DKIM    *DKIMConfig
	// TempDir is where content is spooled for milters and DKIM before it
	// goes to the Store; "" means os.TempDir().
	TempDir string

	// Location is the time zone of an added Date: header; nil means
	// time.Local. Now is the clock; nil means time.Now.
	Location *time.Location
	Now      func() time.Time
	// Logger receives the log lines, in Postfix's wording with the queue
	// ID as an attribute. Nil means slog.Default().
	Logger *slog.Logger
}

// Cleanup is the intake pipeline. It is safe for concurrent use: each
// Open starts an independent Message.
type Cleanup struct {
	cfg    Config
	store  Store
	log    *slog.Logger
	checks *contentcheck.Config // used for every message
	drop   map[string]bool
}

// DefaultDropHeaders is message_drop_headers' default.
var DefaultDropHeaders = []string{"bcc", "content-length", "resent-bcc", "return-path"}

// New returns a Cleanup that queues into store.
func New(cfg Config, store Store) (*Cleanup, error) {
	if store == nil {
		return nil, errors.New("cleanup: a Store is required")
	}
	if cfg.HopcountLimit == 0 {
		cfg.HopcountLimit = 50
	}
	if cfg.HopcountLimit < 0 {
		return nil, fmt.Errorf("cleanup: hopcount_limit %d: must be positive", cfg.HopcountLimit)
	}
	switch strings.ToLower(cfg.HeaderFromFormat) {
	case "", "standard":
		cfg.HeaderFromFormat = "standard"
	case "obsolete":
		cfg.HeaderFromFormat = "obsolete"
	default:
		return nil, fmt.Errorf("cleanup: header_from_format = %s: want standard or obsolete", cfg.HeaderFromFormat)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Cleanup{cfg: cfg, store: store, log: cfg.Logger, drop: map[string]bool{}}
	if c.log == nil {
		c.log = slog.Default()
	}
	drop := cfg.DropHeaders
	if drop == nil {
		drop = DefaultDropHeaders
	}
	for _, h := range drop {
		c.drop[strings.ToLower(h)] = true
	}
	c.checks = cfg.Checks
	if c.checks == nil {
		c.checks = &contentcheck.Config{Logger: c.log}
	}
	if c.checks.Logger == nil {
		cc := *c.checks
		cc.Logger = c.log
		c.checks = &cc
	}
	if cfg.NoHeaderBodyChecks {
		cc := *c.checks
		cc.HeaderChecks, cc.MIMEHeaderChecks, cc.NestedHeaderChecks, cc.BodyChecks = nil, nil, nil, nil
		c.checks = &cc
	}
	return c, nil
}

// Config returns the configuration in use.
func (c *Cleanup) Config() Config { return c.cfg }

// logf logs one line in Postfix's wording: "QUEUEID: text".
func (c *Cleanup) logf(id string, level slog.Level, format string, args ...any) {
	if !c.log.Enabled(context.Background(), level) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if rest, ok := strings.CutPrefix(msg, "warning: "); ok {
		// Postfix's msg_warn puts its prefix first: "warning: ID: text".
		msg = "warning: " + id + ": " + rest
	} else {
		msg = id + ": " + msg
	}
	c.log.Log(context.Background(), level, msg, slog.String("queue_id", id))
}

// Message is one message going through cleanup: write the content (CRLF
// lines, headers then body), then Commit or Abort.
type Message struct {
	c    *Cleanup
	ctx  context.Context
	in   Input
	file File
	id   string

	// rcptSource, when set, gives the current recipients (the SMTP
	// server's envelope grows while the message is open).
	rcptSource func() []Recipient

	started bool
	walker  *contentcheck.Walker
	out     countWriter // where the walker's output goes: the File or the spool
	spool   *spool
	extra   []*spool // further temporary files (milter changes)
	inBytes int64
	tooBig  bool
	werr    error // first write error
	done    bool

	hdrCtx hdrContext
	sender string // rewritten envelope sender
	// senderErr is a table error while rewriting the sender; it defers
	// the message at Commit.
	senderErr error
	hdr       headerState
}

// countWriter counts what goes to w.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Open starts a message. The queue file is created at once, so the queue
// ID is known (the SMTP server puts it in Received:).
func (c *Cleanup) Open(ctx context.Context, in *Input) (*Message, error) {
	m := &Message{c: c, ctx: ctx, in: *in}
	m.in.Recipients = append([]Recipient(nil), in.Recipients...)
	if m.in.Arrival.IsZero() {
		m.in.Arrival = c.cfg.Now()
	}
	f, err := c.store.Create(ctx, m.in.Arrival)
	if err != nil {
		return nil, fmt.Errorf("cleanup: creating a queue file: %w", err)
	}
	m.file, m.id = f, f.ID()
	return m, nil
}

// ID is the queue ID.
func (m *Message) ID() string { return m.id }

// start prepares the pipeline at the first write, when the sender and (for
// SMTP) all recipients are known.
func (m *Message) start() error {
	m.started = true
	c := m.c
	m.sender = m.in.Sender
	if r := c.cfg.Rewriter; r != nil {
		s, err := r.Sender(m.ctx, m.in.Sender, c.cfg.NoAddressMappings)
		if err != nil {
			m.senderErr = err
		} else {
			m.sender = s
		}
	}
	hc, err := m.headerContext()
	if err != nil {
		// A table error in local_header_rewrite_clients: Postfix's smtpd
		// treats the client as remote; we do too and log it.
		c.logf(m.id, slog.LevelWarn, "warning: local_header_rewrite_clients: %v", err)
	}
	m.hdrCtx = hc
	if m.needSpool() {
		sp, err := newSpool(c.cfg.TempDir)
		if err != nil {
			return err
		}
		m.spool = sp
		m.out.w = sp.f
	} else {
		m.out.w = m.file
	}
	m.hdr.init(m)
	info := contentcheck.LogInfo{QueueID: m.id, Client: m.clientLog(), Sender: m.sender,
		Proto: m.in.Client.Proto, Helo: m.in.Client.Helo}
	if rc := m.recipients(); len(rc) > 0 {
		info.Recipient = rc[0].Addr
	}
	m.walker = c.checks.NewWalker(m.ctx, &m.out, contentcheck.Hooks{
		Seen:         m.hdr.seen,
		Header:       m.hdr.header,
		EndOfHeaders: m.hdr.endOfHeaders,
	}, info)
	return nil
}

// clientLog is the client as check log lines name it.
func (m *Message) clientLog() string {
	ci := m.in.Client
	if m.in.Local || ci.Addr == "" {
		return "local"
	}
	name := ci.Name
	if name == "" {
		name = "unknown"
	}
	return name + "[" + ci.Addr + "]"
}

func (m *Message) recipients() []Recipient {
	if m.rcptSource != nil {
		return m.rcptSource()
	}
	return m.in.Recipients
}

// Write takes the next piece of the message content.
func (m *Message) Write(p []byte) (int, error) {
	if m.done {
		return 0, errors.New("cleanup: write after Commit or Abort")
	}
	if m.werr != nil {
		return 0, m.werr
	}
	if !m.started {
		if err := m.start(); err != nil {
			m.werr = err
			return 0, err
		}
	}
	m.inBytes += int64(len(p))
	if lim := m.c.cfg.MessageSizeLimit; lim > 0 && m.inBytes > lim {
		// Read and drop the rest, as Postfix does, and refuse at the end.
		m.tooBig = true
		return len(p), nil
	}
	if _, err := m.walker.Write(p); err != nil {
		m.werr = fmt.Errorf("cleanup: %s: writing the queue file: %w", m.id, err)
		return 0, m.werr
	}
	return len(p), nil
}

// Abort discards the message.
func (m *Message) Abort() error {
	if m.done {
		return nil
	}
	m.done = true
	m.release()
	return m.file.Abort()
}

func (m *Message) release() {
	if m.walker != nil && !m.hdr.closed {
		m.hdr.closed = true
		m.walker.Close()
	}
	if m.spool != nil {
		m.spool.close()
		m.spool = nil
	}
	for _, sp := range m.extra {
		sp.close()
	}
	m.extra = nil
}

// reject aborts the queue file and returns the reply as a *RejectError.
func (m *Message) reject(r restrictions.Reply) error {
	m.done = true
	m.release()
	m.file.Abort()
	return &RejectError{Reply: r}
}

// Replies for cleanup's own refusals, as Postfix's smtpd words them
// (smtpd.c, cleanup_strerror.c).
var (
	replyWriteError = restrictions.Reply{Code: 451, DSN: "4.3.0", Text: "Error: queue file write error"}
	replyTooBig     = restrictions.Reply{Code: 552, DSN: "5.3.4", Text: "Error: message file too big"}
	replyHops       = restrictions.Reply{Code: 554, DSN: "5.4.0", Text: "Error: too many hops"}
	replyAlias      = restrictions.Reply{Code: 451, DSN: "4.6.0", Text: "Alias expansion error"}
	replyNoRcpt     = restrictions.Reply{Code: 550, DSN: "5.1.0", Text: "Error: no recipients specified"}
)

// Commit ends the message: it applies the verdicts, rewrites the
// envelope and hands the file to the Store. A refused or deferred message
// gives a *RejectError and nothing is queued; a discarded one gives nil
// and nothing is queued.
func (m *Message) Commit(ctx context.Context) error {
	if m.done {
		return errors.New("cleanup: Commit after Commit or Abort")
	}
	m.ctx = ctx
	if !m.started {
		if err := m.start(); err != nil {
			m.Abort()
			return err
		}
	}
	if m.werr != nil {
		m.Abort()
		return m.werr
	}
	m.hdr.closed = true
	verdict, err := m.walker.Close()
	if err != nil {
		m.Abort()
		return fmt.Errorf("cleanup: %s: writing the queue file: %w", m.id, err)
	}
	eff := m.in.Effects
	discard := eff.Discard || verdict.Discard
	switch {
	case discard:
		// DISCARD: the client is told 250, nothing is queued.
		m.done = true
		m.release()
		return m.file.Abort()
	case m.tooBig:
		return m.reject(replyTooBig)
	case verdict.Reject != nil:
		return m.reject(*verdict.Reject)
	case m.hdr.hopsExceeded:
		m.c.logf(m.id, slog.LevelWarn, "warning: message rejected: hopcount exceeded")
		return m.reject(replyHops)
	case m.hdr.err != nil:
		m.c.logf(m.id, slog.LevelWarn, "warning: %v -- message not accepted, try again later", m.hdr.err)
		return m.reject(replyWriteError)
	case m.senderErr != nil:
		m.c.logf(m.id, slog.LevelWarn, "warning: rewriting sender %s: %v -- message not accepted, try again later", m.in.Sender, m.senderErr)
		return m.reject(replyWriteError)
	}

	env := &Envelope{
		QueueID: m.id, Arrival: m.in.Arrival, Sender: m.sender,
		Body: m.in.Body, Ret: m.in.Ret, EnvID: m.in.EnvID, SMTPUTF8: m.in.SMTPUTF8,
		Client: m.in.Client, MessageID: m.hdr.messageID,
		Filter: m.c.cfg.ContentFilter,
	}
	if eff.Filter != "" {
		env.Filter = eff.Filter
	}
	if verdict.Filter != "" {
		env.Filter = verdict.Filter
	}
	env.Hold = eff.Hold || verdict.Hold
	env.HoldReason = verdict.HoldText
	if err := m.envelopeRecipients(ctx, env, &verdict); err != nil {
		var re *RejectError
		if errors.As(err, &re) {
			return m.reject(re.Reply)
		}
		m.c.logf(m.id, slog.LevelWarn, "warning: %v -- message not accepted, try again later", err)
		return m.reject(replyWriteError)
	}
	if len(env.Recipients) == 0 {
		return m.reject(replyNoRcpt)
	}

	// Milters and DKIM work on the spooled content; the result goes to
	// the queue file.
	if m.spool != nil {
		res, err := m.finishSpool(ctx, env)
		if err != nil {
			var re *RejectError
			if errors.As(err, &re) {
				return m.reject(re.Reply)
			}
			m.Abort()
			return err
		}
		if res.discard {
			m.done = true
			m.release()
			return m.file.Abort()
		}
	}
	env.Size = m.out.n
	if m.spool != nil {
		env.Size = m.spool.written
	}
	m.done = true
	m.release()
	if err := m.file.Commit(ctx, env); err != nil {
		m.file.Abort()
		return fmt.Errorf("cleanup: %s: committing the queue file: %w", m.id, err)
	}
	return nil
}
