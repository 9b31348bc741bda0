package bounce

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Settings are the bounce service's configuration. Build them with
// FromConfig from main.cf, or fill them in; Defaults gives Postfix's
// default values.
type Settings struct {
	// Hostname is myhostname: Reporting-MTA, the MIME boundary, the
	// Received: header and Message-Id.
	Hostname string
	// Origin is myorigin, the domain of MAILER-DAEMON in From: and of
	// double_bounce_sender and unqualified notice recipients. Empty means
	// Hostname.
	Origin string
	// MailName is mail_name ("Postfix"): X-Postfix-* fields, the
	// Received: header and the X-Postfix diagnostic type.
	MailName string
	// DoubleBounceSender is double_bounce_sender's local part.
	DoubleBounceSender string
	// NotifyClasses is notify_classes; "bounce", "2bounce" and "delay"
	// concern notices.
	NotifyClasses []string
	// BounceNoticeRecipient, TwoBounceNoticeRecipient and
	// DelayNoticeRecipient are bounce_notice_recipient,
	// 2bounce_notice_recipient and delay_notice_recipient.
	BounceNoticeRecipient    string
	TwoBounceNoticeRecipient string
	DelayNoticeRecipient     string
	// ErrorNoticeRecipient is error_notice_recipient, for the caller's
	// resource/software/policy/protocol notices (not written here).
	ErrorNoticeRecipient string
	// BounceSizeLimit is bounce_size_limit: a larger original is
	// returned as headers only.
	BounceSizeLimit int64
	// MaximalQueueLifetime is maximal_queue_lifetime (Will-Retry-Until
	// and the template's $maximal_queue_lifetime_*).
	MaximalQueueLifetime time.Duration
	// DelayWarningTime is delay_warning_time, for the templates.
	DelayWarningTime time.Duration
	// SMTPUTF8Enable is smtputf8_enable: a us-ascii template is then
	// sent as utf-8, as Postfix does.
	SMTPUTF8Enable bool
	// Templates are the notice texts; nil means the built-in ones.
	Templates *Templates
	// Params looks up other main.cf parameters for $name in template
	// text; nil knows only the settings above.
	Params func(name string) (string, bool)
	// ReceivedFromMTA adds RFC 3464's Received-From-MTA field (the
	// original's client), which Postfix does not write.
	ReceivedFromMTA bool
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Location is the time zone of dates; nil means time.Local, as
	// Postfix writes local time.
	Location *time.Location
	// NewID returns the queue ID the notice will get, for the Received:
	// header and Message-Id, as Postfix's cleanup writes them. Nil
	// writes no Received: header and a random Message-Id.
	NewID func() string
}

// Defaults returns Postfix 3.7's defaults for hostname.
func Defaults(hostname string) *Settings {
	return &Settings{
		Hostname:                 hostname,
		MailName:                 "Postfix",
		DoubleBounceSender:       "double-bounce",
		NotifyClasses:            []string{"resource", "software"},
		BounceNoticeRecipient:    "postmaster",
		TwoBounceNoticeRecipient: "postmaster",
		DelayNoticeRecipient:     "postmaster",
		ErrorNoticeRecipient:     "postmaster",
		BounceSizeLimit:          50000,
		MaximalQueueLifetime:     5 * 24 * time.Hour,
		SMTPUTF8Enable:           true,
	}
}

func (s *Settings) origin() string {
	if s.Origin != "" {
		return s.Origin
	}
	return s.Hostname
}

func (s *Settings) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Settings) loc() *time.Location {
	if s.Location != nil {
		return s.Location
	}
	return time.Local
}

func (s *Settings) mailName() string {
	if s.MailName != "" {
		return s.MailName
	}
	return "Postfix"
}

func (s *Settings) templates() *Templates {
	if s.Templates != nil {
		return s.Templates
	}
	return builtin
}

func (s *Settings) class(name string) bool {
	return slices.ContainsFunc(s.NotifyClasses, func(c string) bool { return strings.EqualFold(c, name) })
}

// qualify appends @myorigin to an address without a domain, as cleanup
// does to the notice recipients (postmaster → postmaster@myorigin).
func (s *Settings) qualify(addr string) string {
	if addr == "" || strings.Contains(addr, "@") {
		return addr
	}
	return addr + "@" + s.origin()
}

// doubleBounce is the envelope sender of postmaster copies.
func (s *Settings) doubleBounce() string {
	local := s.DoubleBounceSender
	if local == "" {
		local = "double-bounce"
	}
	return s.qualify(local)
}

// isDoubleBounce says whether sender is double_bounce_sender, whose mail
// never gets a notice (it is itself a postmaster notice).
func (s *Settings) isDoubleBounce(sender string) bool {
	local := s.DoubleBounceSender
	if local == "" {
		local = "double-bounce"
	}
	return strings.EqualFold(sender, local) || strings.EqualFold(sender, s.doubleBounce())
}

// Notices returns every notice of kind k that m calls for: the one to the
// sender (if any recipient asked for it) and the postmaster copies that
// notify_classes asks for. An empty result is normal (NOTIFY=NEVER, a null
// sender, no recipient with the kind's actions). The error is about the
// input (a missing host name, content that cannot be read).
func (s *Settings) Notices(k Kind, m *Message) ([]Notice, error) {
	if s.Hostname == "" {
		return nil, fmt.Errorf("%w: no myhostname in the bounce settings", ErrBadMessage)
	}
	if m.Content == nil && m.Size > 0 {
		return nil, fmt.Errorf("%w: message %s: size %d but no content", ErrBadMessage, m.QueueID, m.Size)
	}
	if s.isDoubleBounce(m.Sender) {
		// A postmaster notice that failed: Postfix drops it rather than
		// notify anyone again.
		return nil, nil
	}
	var all []Recipient
	for _, r := range m.Recipients {
		if k.covers(r.Action) {
			all = append(all, r)
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	// Postfix's qmgr delivers a message's recipients sorted by address,
	// so its notices list them in that order.
	slices.SortStableFunc(all, func(a, b Recipient) int { return strings.Compare(a.Address, b.Address) })
	var want Notify
	switch k {
	case Failure:
		want = NotifyFailure
	case Delay:
		want = NotifyDelay
	case Success:
		want = NotifySuccess
	}
	var toSender []Recipient
	for _, r := range all {
		if r.Notify.has(want) {
			toSender = append(toSender, r)
		}
	}

	var out []Notice
	add := func(n notice) error {
		data, enc, err := s.build(n)
		if err != nil {
			return err
		}
		out = append(out, Notice{Kind: k, Class: n.class, Sender: n.envFrom, Recipient: n.to,
			SMTPUTF8: m.SMTPUTF8, Encoding: enc, Data: data})
		return nil
	}
	tmpl := s.templates().get(k)
	if m.Sender == "" {
		// Never a notice to the null sender (RFC 3464 2, RFC 5321
		// 6.1): a failed bounce goes to the postmaster as a double
		// bounce, with the whole message as returned to a sender.
		if k == Failure && s.class("2bounce") {
			return out, add(notice{kind: k, msg: m, rcpts: all, class: "2bounce",
				to: s.qualify(s.TwoBounceNoticeRecipient), envFrom: s.doubleBounce(),
				postmaster: true, ret: RetFull, tmpl: tmpl})
		}
		return nil, nil
	}
	if len(toSender) > 0 {
		// RET=FULL or none returns the message with a non-delivery
		// notice, RET=HDRS its headers (RFC 3461 4.3: RET is about
		// failure notices). Delay and success notices carry the
		// headers only, as Postfix's do.
		ret := m.Ret
		if k != Failure {
			ret = RetHdrs
		}
		if err := add(notice{kind: k, msg: m, rcpts: toSender, class: "sender", to: m.Sender,
			ret: ret, tmpl: tmpl}); err != nil {
			return nil, err
		}
	}
	switch {
	case k == Failure && s.class("bounce"):
		if err := add(notice{kind: k, msg: m, rcpts: all, class: "bounce",
			to: s.qualify(s.BounceNoticeRecipient), envFrom: s.doubleBounce(),
			postmaster: true, ret: RetHdrs, tmpl: tmpl}); err != nil {
			return nil, err
		}
	case k == Delay && s.class("delay"):
		if err := add(notice{kind: k, msg: m, rcpts: all, class: "delay",
			to: s.qualify(s.DelayNoticeRecipient), envFrom: s.doubleBounce(),
			postmaster: true, ret: RetHdrs, tmpl: tmpl}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (k Kind) covers(a Action) bool {
	switch k {
	case Failure:
		return a == Failed
	case Delay:
		return a == Delayed
	case Success:
		return a == Delivered || a == Relayed || a == Expanded
	}
	return false
}

// randomID is the Message-Id local part when no NewID is given.
func randomID() string {
	var b [10]byte
	rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}
