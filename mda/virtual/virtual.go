package virtual

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/mailbox"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/queue"
)

// Options are what FromConfig cannot read from main.cf.
type Options struct {
	// Logger gets the agent's warnings (table errors, bad uids); nil
	// discards them.
	Logger *slog.Logger
	// Hostname is the host part of Maildir file names; "" is the
	// system's host name, as Postfix uses.
	Hostname string
	// Hub is told of new messages; nil is mailbox.DefaultHub.
	Hub *mailbox.Hub
	// Now is the clock for Maildir names and From_ lines; nil is
	// time.Now.
	Now func() time.Time
}

// Config is the agent's typed configuration: what FromConfig reads from
// main.cf. Build one directly to run the agent without a main.cf.
type Config struct {
	// Base is virtual_mailbox_base, an absolute directory.
	Base string
	// Mailboxes, UIDs and GIDs are virtual_mailbox_maps,
	// virtual_uid_maps and virtual_gid_maps.
	Mailboxes, UIDs, GIDs maps.List
	// MinimumUID is virtual_minimum_uid (100).
	MinimumUID int
	// Limit is virtual_mailbox_limit in bytes (0: none): the size of an
	// mbox file, or of one Maildir file.
	Limit int64
	// Locks is virtual_mailbox_lock ("fcntl", "dotlock", "flock").
	Locks []string
	// Delimiter is recipient_delimiter.
	Delimiter string
	// OriginalRecipient is enable_original_recipient: write X-Original-To.
	OriginalRecipient bool
	// LockAttempts, LockDelay and StaleLockTime are
	// deliver_lock_attempts, deliver_lock_delay and stale_lock_time.
	LockAttempts  int
	LockDelay     time.Duration
	StaleLockTime time.Duration
}

// Agent is virtual(8). It implements queue.Deliverer.
type Agent struct {
	cfg  Config
	opts Options
	// asRoot: files are created as the recipient's uid/gid.
	asRoot bool
	// keys is the lookup strategy of all three tables (user+ext@domain,
	// user@domain, @domain), made once from cfg.Delimiter.
	keys maps.AddressStrategy
}

var _ queue.Deliverer = (*Agent)(nil)

// FromConfig reads the agent's parameters from cfg (see the package
// documentation) and opens its tables.
func FromConfig(ctx context.Context, cfg *config.Config, opts Options) (*Agent, error) {
	r := config.NewReader(cfg)
	c := Config{
		Base:              r.Str("virtual_mailbox_base"),
		MinimumUID:        r.Int("virtual_minimum_uid"),
		Limit:             r.Size("virtual_mailbox_limit"),
		Locks:             r.List("virtual_mailbox_lock"),
		Delimiter:         r.Str("recipient_delimiter"),
		OriginalRecipient: r.Bool("enable_original_recipient"),
		LockAttempts:      r.Int("deliver_lock_attempts"),
		LockDelay:         r.Duration("deliver_lock_delay"),
		StaleLockTime:     r.Duration("stale_lock_time"),
	}
	open := func(param string) (maps.List, error) {
		var l maps.List
		for _, spec := range r.List(param) {
			m, err := maps.Open(ctx, spec)
			if err != nil {
				return nil, fmt.Errorf("virtual: %s: %w", param, err)
			}
			l = append(l, m)
		}
		return l, nil
	}
	var err error
	if c.Mailboxes, err = open("virtual_mailbox_maps"); err != nil {
		return nil, err
	}
	if c.UIDs, err = open("virtual_uid_maps"); err != nil {
		return nil, err
	}
	if c.GIDs, err = open("virtual_gid_maps"); err != nil {
		return nil, err
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("virtual: %w", err)
	}
	return New(c, opts)
}

// New returns an agent for c.
func New(c Config, opts Options) (*Agent, error) {
	if !filepath.IsAbs(c.Base) {
		return nil, fmt.Errorf("virtual: virtual_mailbox_base must be an absolute path, not %q", c.Base)
	}
	for _, l := range c.Locks {
		switch l {
		case "fcntl", "flock", "dotlock":
		default:
			return nil, fmt.Errorf("virtual: virtual_mailbox_lock: unknown lock method %q", l)
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Agent{cfg: c, opts: opts, asRoot: os.Geteuid() == 0, keys: maps.MappingStrategy(c.Delimiter, nil)}, nil
}

// Relay is the relay= of virtual's log lines.
const Relay = "virtual"

// Deliver delivers each recipient of d to its mailbox.
func (a *Agent) Deliver(ctx context.Context, d *queue.Delivery) []queue.Result {
	out := make([]queue.Result, len(d.Recipients))
	for i, r := range d.Recipients {
		out[i] = a.deliverOne(ctx, d, r)
	}
	return out
}

func result(o queue.Outcome, dsn, reason string) queue.Result {
	return queue.Result{Outcome: o, DSN: dsn, Relay: Relay, Reason: reason}
}

// configError is virtual's answer to a table or uid/gid problem: the
// mail waits until the administrator fixes it.
var configError = result(queue.Delayed, "4.3.5", "mail system configuration error")

func (a *Agent) warn(d *queue.Delivery, msg string) {
	if a.opts.Logger != nil {
		a.opts.Logger.Warn(msg, "queue_id", d.QueueID)
	}
}

func (a *Agent) deliverOne(ctx context.Context, d *queue.Delivery, r queue.Recipient) queue.Result {
	// There is no Delivered-To loop check: virtual(8) has none (it does
	// not forward, so it cannot loop), and Postfix 3.7 delivers a message
	// that already carries the recipient's Delivered-To
	// (oracle_test.go).
	lower := strings.ToLower(r.Addr)
	// virtual/mailbox.c: the key is the whole address folded to lower
	// case; keys user+ext@domain, user@domain, @domain.
	res, ok, err := a.cfg.Mailboxes.FindAddress(ctx, lower, a.keys)
	if err != nil {
		a.warn(d, fmt.Sprintf("table virtual_mailbox_maps: lookup %s: %v", lower, err))
		return configError
	}
	if !ok {
		return result(queue.Failed, "5.1.1", `unknown user: "`+r.Addr+`"`)
	}
	uid, ok := a.id(ctx, d, "virtual_uid_maps", a.cfg.UIDs, lower, a.cfg.MinimumUID)
	if !ok {
		return configError
	}
	gid, ok := a.id(ctx, d, "virtual_gid_maps", a.cfg.GIDs, lower, 1)
	if !ok {
		return configError
	}
	path := a.cfg.Base + "/" + res.Value
	orig := ""
	if a.cfg.OriginalRecipient {
		orig = r.Original
		if orig == "" {
			orig = r.Addr
		}
	}
	// Delivered-To keeps the recipient's case: Postfix 3.7's virtual(8)
	// writes "Delivered-To: Bob+Ext@v.test" for that recipient
	// (oracle_test.go).
	hdr := mda.DeliveryHeaders(d.Envelope.Sender, orig, r.Addr)
	rc, err := d.Open()
	if err != nil {
		return result(queue.Delayed, "4.3.0", "cannot read message: "+err.Error())
	}
	defer rc.Close()
	content := io.MultiReader(bytes.NewReader(hdr), mda.NewLFReader(rc))
	if !a.asRoot {
		// Not root: files belong to the process's own user.
		uid, gid = -1, -1
	}
	// Stored with the table's uid and gid, as Postfix's virtual(8) does
	// (set_eugid): a directory replaced with a link by someone with those
	// rights leads nowhere they could not write anyway.
	asOwner := func(fn func()) {
		if !a.asRoot {
			fn()
			return
		}
		if rerr := mda.RunAs(uid, gid, fn); rerr != nil {
			err = rerr
		}
	}
	now := a.opts.Now()
	if strings.HasSuffix(path, "/") {
		asOwner(func() {
			_, err = mailbox.DeliverMaildir(ctx, path, content, mailbox.MaildirOptions{
				Create: true, Hostname: a.opts.Hostname, Time: now, SizeLimit: a.cfg.Limit,
				UID: uid, GID: gid, Hub: a.opts.Hub,
			})
		})
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				a.warn(d, fmt.Sprintf("maildir access problem for UID/GID=%d/%d: %s", uid, gid, errText(err)))
			}
			dsn, text := failure(err, true)
			return result(outcomeOf(dsn), dsn, "maildir delivery failed: "+text)
		}
		return result(queue.Delivered, "2.0.0", "delivered to maildir")
	}
	asOwner(func() {
		err = mailbox.DeliverMbox(ctx, path, d.Envelope.Sender, content, mailbox.MboxOptions{
			Locks: a.cfg.Locks, Create: true, SizeLimit: a.cfg.Limit, Time: now, UID: uid, GID: gid, Hub: a.opts.Hub,
			LockAttempts: a.cfg.LockAttempts, LockDelay: a.cfg.LockDelay, StaleLockTime: a.cfg.StaleLockTime,
		})
	})
	if err != nil {
		dsn, text := failure(err, false)
		return result(outcomeOf(dsn), dsn, "delivery failed to mailbox "+path+": "+text)
	}
	return result(queue.Delivered, "2.0.0", "delivered to mailbox")
}

// id looks up a uid or gid for addr; ok is false (and a warning logged)
// when it is missing, not a number, or below min.
func (a *Agent) id(ctx context.Context, d *queue.Delivery, param string, l maps.List, addr string, min int) (int, bool) {
	res, ok, err := l.FindAddress(ctx, addr, a.keys)
	if err != nil {
		a.warn(d, fmt.Sprintf("table %s: lookup %s: %v", param, addr, err))
		return 0, false
	}
	if !ok {
		a.warn(d, fmt.Sprintf("recipient %s: not found in %s", addr, param))
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(res.Value))
	if err != nil || n < min {
		what := "uid"
		if param == "virtual_gid_maps" {
			what = "gid"
		}
		a.warn(d, fmt.Sprintf("recipient %s: bad %s %s in %s", addr, what, res.Value, param))
		return 0, false
	}
	return n, true
}

// failure gives the status and text of a mailbox error as Postfix's
// mail_copy, mbox_open and dot_lockfile word them (checked against
// Postfix 3.7 in oracle_test.go): a file over the size limit or a quota
// bounces (5.2.2 "error writing message: File too large"), a full disk
// defers (4.3.0), a lock file that cannot be made or a lock not obtained
// defers (4.2.0 "unable to create lock file X.lock: ..."). Other errors
// defer with 4.2.0 (mbox_open's status) and the error's own text.
func failure(err error, maildir bool) (dsn, text string) {
	var pe *os.PathError
	switch {
	case errors.Is(err, mailbox.ErrTooLarge), errors.Is(err, syscall.EFBIG):
		return "5.2.2", "error writing message: " + strerror(syscall.EFBIG)
	case errors.Is(err, syscall.EDQUOT):
		return "5.2.2", "error writing message: " + strerror(syscall.EDQUOT)
	case errors.Is(err, syscall.ENOSPC):
		return "4.3.0", "error writing message: " + strerror(syscall.ENOSPC)
	case errors.Is(err, mailbox.ErrUnsafeFile):
		// safe_open's text ("file has 2 hard links"), deferred as Postfix's virtual(8) does.
		_, why, _ := strings.Cut(err.Error(), mailbox.ErrUnsafeFile.Error()+": ")
		return "4.2.0", why
	case errors.As(err, &pe) && strings.HasSuffix(pe.Path, ".lock"):
		return "4.2.0", "unable to create lock file " + pe.Path + ": " + strerror(pe.Err)
	case maildir && errors.As(err, &pe):
		// Postfix's text for its first step (the file in tmp/, whose
		// directories it makes when missing); decided by the store, not
		// by a "/tmp/" in the path, which the base may well have.
		return "4.2.0", "create maildir file " + pe.Path + ": " + strerror(pe.Err)
	case !maildir && errors.As(err, &pe) && pe.Op == "open":
		return "4.2.0", "cannot open file: " + strerror(pe.Err)
	}
	return "4.2.0", errText(err)
}

// strerror is the C library's text for an errno: Go's text with a
// capital letter ("No such file or directory").
func strerror(err error) string {
	s := err.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func outcomeOf(dsn string) queue.Outcome {
	if dsn[0] == '5' {
		return queue.Failed
	}
	return queue.Delayed
}

// errText is the error without the package prefix, for the reason text.
func errText(err error) string {
	return strings.TrimPrefix(err.Error(), "mailbox: ")
}
