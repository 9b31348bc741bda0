package restrictions

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/postkit-mail/postkit/maps"
)

// errClass is the kind of failure a rejection reports (Postfix's
// MAIL_ERROR_*). Only policy and bounce rejections can be softened into
// warnings by warn_if_reject.
type errClass int

const (
	classPolicy errClass = iota
	classBounce
	classSoftware
	classResource
	classData
)

// Reply classes: the words that follow "<name>: " in a rejection.
const (
	nameClient     = "Client host"
	nameRevClient  = "Unverified Client host"
	nameCcert      = "Client certificate"
	nameSASLUser   = "SASL login name"
	nameHelo       = "Helo command"
	nameSender     = "Sender address"
	nameRecipient  = "Recipient address"
	nameETRN       = "Etrn command"
	nameData       = "Data command"
	nameEndOfData  = "End-of-data"
	aclClient      = "check_client_access"
	aclHelo        = "check_helo_access"
	aclSender      = "check_sender_access"
	aclRecipient   = "check_recipient_access"
	aclETRN        = "check_etrn_access"
	tempLookupFail = "Temporary lookup failure"
)

// abort unwinds the evaluation of a whole stage, as Postfix's longjmp out
// of generic_checks does after a lookup or configuration error. The reply
// has already been formatted.
type abort struct{ st status }

func (*abort) Error() string { return "restrictions: evaluation aborted" }

// eval is the state of one Check: Postfix's SMTPD_STATE fields that
// smtpd_check.c uses, for one command.
type eval struct {
	c     *Checker
	s     *Snapshot
	stage Stage
	where string

	recursion     int
	warnIfReject  int // the recursion level that armed warn_if_reject; 0: off
	deferIfReject *Deferral
	deferIfPermit *Deferral
	discard       bool
	hold          bool
	reply         string // the last rejection, formatted
	hangup        bool

	senderChecked    bool // reject_unlisted_sender already ran
	recipientChecked bool // reject_unlisted_recipient already ran

	// The list being evaluated.
	replyName  string
	replyClass string
	defACL     string

	d   *Decision
	dec Decision // what d points to

	namaddrCache string
}

// Check evaluates the restrictions of stage for the session state in s and
// returns the decision. It never fails: table and DNS errors become the
// 4xx replies Postfix gives for them. With Config.DelayReject the client,
// HELO and sender restrictions are evaluated first at StageRecipient and
// StageETRN (and, for callers asking early, at StageHelo and
// StageSender); otherwise each stage evaluates its own lists only, and the
// caller carries Decision.Txn into the next Snapshot.
func (c *Checker) Check(ctx context.Context, stage Stage, s *Snapshot) Decision {
	if s == nil {
		s = &Snapshot{}
	}
	e := evalPool.Get().(*eval)
	*e = eval{c: c, s: s, stage: stage, where: s.command(stage), d: &e.dec,
		discard: s.Txn.Discard, hold: s.Txn.Hold}
	e.dec.Txn = s.Txn
	var rejected bool
	switch stage {
	case StageClient:
		rejected = e.checkClient(ctx)
	case StageHelo:
		rejected = c.cfg.DelayReject && e.checkClient(ctx) || e.checkHelo(ctx)
	case StageSender:
		rejected = e.heloRequired() ||
			c.cfg.DelayReject && (e.checkClient(ctx) || e.checkHelo(ctx)) || e.checkSender(ctx)
	case StageRecipient:
		rejected = e.checkRecipient(ctx)
	case StageData:
		rejected = e.checkData(ctx, listData, "DATA", nameData)
	case StageEndOfData:
		rejected = e.checkData(ctx, listEOD, "END-OF-MESSAGE", nameEndOfData)
	case StageETRN:
		rejected = e.checkETRN(ctx)
	}
	d := e.dec
	if rejected {
		d.Reply = parseReply(e.reply)
		d.Disconnect = d.Reply.Code == 421 || d.Reply.Code == 521
	}
	d.Hangup = e.hangup
	d.Txn.Discard = e.discard
	d.Txn.Hold = e.hold
	// The evaluation state is recycled: a Check allocates little more
	// than the strings of its reply. Clear the references first.
	*e = eval{}
	evalPool.Put(e)
	return d
}

// evalPool recycles evaluation states between checks.
var evalPool = sync.Pool{New: func() any { return new(eval) }}

// namaddr is the client's "name[addr]", built once per check.
func (e *eval) namaddr() string {
	if e.namaddrCache == "" {
		e.namaddrCache = e.s.namaddr()
	}
	return e.namaddrCache
}

// heloRequired answers MAIL without HELO/EHLO when smtpd_helo_required.
func (e *eval) heloRequired() bool {
	if !e.c.cfg.HeloRequired || e.s.Helo != "" {
		return false
	}
	e.reply = "503 5.5.1 Error: send HELO/EHLO first"
	return true
}

// resetStage is SMTPD_CHECK_RESET: the per-stage flags start afresh.
func (e *eval) resetStage() {
	e.recursion = 0
	e.warnIfReject = 0
	e.deferIfReject = nil
}

// run evaluates one top-level list and turns an abort into its status.
func (e *eval) run(ctx context.Context, l rlist, replyName, replyClass, defACL string) status {
	if len(l) == 0 {
		return statusDunno
	}
	st, err := e.generic(ctx, l, replyName, replyClass, defACL)
	var ab *abort
	if errors.As(err, &ab) {
		return ab.st
	}
	return st
}

func (e *eval) checkClient(ctx context.Context) bool {
	e.deferIfPermit = nil
	e.resetStage()
	l := e.c.lists[listClient]
	if len(l) == 0 {
		e.d.Txn.ClientDefer = e.deferIfPermit
		return false
	}
	st := e.run(ctx, l, e.namaddr(), nameClient, aclClient)
	e.d.Txn.ClientDefer = e.deferIfPermit
	return st == statusReject
}

func (e *eval) checkHelo(ctx context.Context) bool {
	if e.s.Helo == "" {
		return false
	}
	e.deferIfPermit = e.d.Txn.ClientDefer
	e.resetStage()
	st := e.run(ctx, e.c.lists[listHelo], e.s.Helo, nameHelo, aclHelo)
	e.d.Txn.HeloDefer = e.deferIfPermit
	return st == statusReject
}

// earlierDefer is the defer_if_permit raised by the client or HELO stage.
func (e *eval) earlierDefer() *Deferral {
	if e.s.Helo != "" && e.d.Txn.HeloDefer != nil {
		return e.d.Txn.HeloDefer
	}
	return e.d.Txn.ClientDefer
}

func (e *eval) checkSender(ctx context.Context) bool {
	if !hasSender(e.stage) {
		return false
	}
	e.deferIfPermit = e.earlierDefer()
	e.senderChecked = false
	e.resetStage()
	st := e.run(ctx, e.c.lists[listSender], e.s.Sender, nameSender, aclSender)
	e.d.Txn.SenderDefer = e.deferIfPermit
	if e.c.cfg.RejectUnlistedSender && st != statusReject && !e.senderChecked &&
		!e.discard && e.s.Sender != "" {
		st = e.catch(e.checkSenderMaps(ctx, e.s.Sender))
	}
	return st == statusReject
}

func (e *eval) checkRecipient(ctx context.Context) bool {
	rcpt := e.s.Recipient
	// RFC 5321 4.5.1: "postmaster" without a domain is always accepted.
	if strings.EqualFold(rcpt, "postmaster") {
		return false
	}
	// Postfix's smtpd also lets double-bounce@$myorigin through before any
	// restriction runs, so that bounces of bounces are never refused
	// (observed with Postfix 3.7; testdata/oracle/double-bounce.txt).
	if a := e.c.cfg.Addresses; a.DoubleBounceSender != "" && a.Myorigin != "" &&
		len(rcpt) == len(a.DoubleBounceSender)+1+len(a.Myorigin) &&
		strings.EqualFold(rcpt, a.DoubleBounceSender+"@"+a.Myorigin) {
		return false
	}
	e.recipientChecked = false
	if e.c.cfg.DelayReject && (e.checkClient(ctx) || e.checkHelo(ctx) || e.checkSender(ctx)) {
		return true
	}
	e.deferIfPermit = e.d.Txn.SenderDefer
	e.resetStage()
	order := [2]int{listRecipient, listRelay}
	if e.c.cfg.RelayBeforeRecipient {
		order = [2]int{listRelay, listRecipient}
	}
	st := statusDunno
	for _, li := range order {
		st = e.run(ctx, e.c.lists[li], rcpt, nameRecipient, aclRecipient)
		if st == statusReject {
			break
		}
	}
	st = e.finalDefer(st)
	if e.c.cfg.RejectUnlistedRecipient && st != statusReject && !e.recipientChecked && !e.discard {
		st = e.catch(e.checkRecipientMaps(ctx, rcpt))
	}
	return st == statusReject
}

func (e *eval) checkETRN(ctx context.Context) bool {
	if e.c.cfg.DelayReject && (e.checkClient(ctx) || e.checkHelo(ctx)) {
		return true
	}
	e.deferIfPermit = e.earlierDefer()
	e.resetStage()
	st := e.run(ctx, e.c.lists[listETRN], e.s.ETRNDomain, nameETRN, aclETRN)
	return e.finalDefer(st) == statusReject
}

func (e *eval) checkData(ctx context.Context, li int, name, class string) bool {
	// The deferral of a rejected last recipient must not linger.
	e.deferIfPermit = nil
	e.resetStage()
	st := e.run(ctx, e.c.lists[li], name, class, "")
	return e.finalDefer(st) == statusReject
}

// finalDefer turns a permit into the armed defer_if_permit deferral.
func (e *eval) finalDefer(st status) status {
	if st != statusReject && e.deferIfPermit != nil {
		d := e.deferIfPermit
		return e.rejectText(d.class, d.Reply.Code, d.Reply.DSN, d.Reply.Text)
	}
	return st
}

// catch turns the (status, error) of a check outside generic into a
// status, formatting the reply for errors.
func (e *eval) catch(st status, err error) status {
	if err == nil {
		return st
	}
	var ab *abort
	if errors.As(err, &ab) {
		return ab.st
	}
	st, err = e.fail(err, e.replyName)
	if errors.As(err, &ab) {
		return ab.st
	}
	return st
}

// generic is generic_checks: evaluate a list in order until an element
// permits or rejects.
func (e *eval) generic(ctx context.Context, l rlist, replyName, replyClass, defACL string) (status, error) {
	savedRecursion := e.recursion
	e.recursion++
	savedName, savedClass, savedACL := e.replyName, e.replyClass, e.defACL
	e.replyName, e.replyClass, e.defACL = replyName, replyClass, defACL
	defer func() {
		e.replyName, e.replyClass, e.defACL = savedName, savedClass, savedACL
	}()
	st := statusDunno
	for i := range l {
		if e.discard {
			break
		}
		el := &l[i]
		if el.name == "warn_if_reject" {
			if e.warnIfReject == 0 {
				e.warnIfReject = e.recursion
			}
			continue
		}
		var err error
		st, err = e.element(ctx, el, l[i+1:])
		if err != nil {
			var ab *abort
			if !errors.As(err, &ab) {
				st, err = e.fail(err, replyName)
			}
			e.recursion = savedRecursion
			return st, err
		}
		if e.warnIfReject >= e.recursion {
			e.warnIfReject = 0
		}
		if st != statusDunno {
			break
		}
		if e.deferIfPermit != nil && e.deferIfReject != nil {
			break
		}
	}
	e.recursion = savedRecursion
	if e.warnIfReject >= e.recursion {
		e.warnIfReject = 0
	}
	return st, nil
}

// element runs one element of a list; rest is what follows it (for the
// "ignored after" warnings).
func (e *eval) element(ctx context.Context, el *elem, rest rlist) (status, error) {
	if el.name == "" {
		// A bare type:table: check_<stage>_access of the list's stage.
		if e.defACL == "" {
			e.warnf("specify one of (check_client_access, check_reverse_client_hostname_access, check_helo_access, check_sender_access, check_recipient_access, check_etrn_access) before %s restriction \"%s\"",
				e.replyClass, el.arg)
			return e.serverError()
		}
		if el.table == nil {
			e.warnf("unexpected dictionary: %s", el.arg)
			return e.serverError()
		}
		b := e.c.lookupBuiltin(e.defACL)
		return b.run(ctx, e, el)
	}
	if el.impl != nil {
		switch el.impl.arg {
		case argTable:
			if el.noArg || !strings.Contains(el.arg, ":") {
				e.warnf("restriction %s: bad argument \"%s\": need maptype:mapname", el.name, el.arg)
				return e.serverError()
			}
			if el.table == nil {
				e.warnf("unexpected dictionary: %s", el.arg)
				return e.serverError()
			}
		case argDomain:
			if el.noArg {
				e.warnf("restriction %s requires domain name argument", el.name)
				return statusDunno, nil
			}
		}
		st, err := el.impl.run(ctx, e, el)
		if err == nil && len(rest) > 0 && e.warnIfReject == 0 {
			switch {
			case el.name == "permit" && st == statusOK,
				el.name == "reject" || el.name == "defer" || el.name == "check_relay_domains":
				e.warnf("restriction `%s' after `%s' is ignored", rest[0].raw, el.name)
			}
		}
		return st, err
	}
	if f, ok := e.c.funcs[el.name]; ok {
		action, err := f(ctx, e.stage, e.s)
		if err != nil {
			return statusDunno, err
		}
		if strings.TrimSpace(action) == "" {
			return statusDunno, nil
		}
		return e.tableResult(ctx, "go:"+el.raw, action, e.replyName, e.replyName, e.replyClass, e.defACL)
	}
	if cl, ok := e.c.class[el.name]; ok {
		// A class that names itself would recurse forever (Postfix's smtpd
		// runs out of stack); stop where access-table recursion stops.
		if e.recursion > maxRecursion {
			e.warnf("restriction class %s causes unreasonable recursion", el.raw)
			return e.serverError()
		}
		return e.generic(ctx, cl, e.replyName, e.replyClass, e.defACL)
	}
	e.warnf("unknown smtpd restriction: \"%s\"", el.raw)
	return e.serverError()
}

// fail formats the reply for a lookup error and aborts the stage: a
// temporary error answers 451 4.3.0, anything else 451 4.3.5.
func (e *eval) fail(err error, replyName string) (status, error) {
	if maps.IsTemporary(err) {
		e.warnf("%v", err)
		st := e.rejectText(classData, 451, "4.3.0", "<"+replyName+">: "+tempLookupFail)
		return st, &abort{st: st}
	}
	e.warnf("%v", err)
	return e.serverError()
}

// serverError answers 451 4.3.5 Server configuration error and aborts.
func (e *eval) serverError() (status, error) {
	st := e.rejectText(classSoftware, 451, "4.3.5", "Server configuration error")
	return st, &abort{st: st}
}

// reject formats a "<name>: Class rejected: text" rejection.
func (e *eval) reject(class errClass, code int, dsn, text string) status {
	return e.rejectText(class, code, dsn, "<"+e.replyName+">: "+e.replyClass+" rejected: "+text)
}

// rejectText is smtpd_check_reject: validate and format the reply, apply
// warn_if_reject, defer_if_reject and soft_bounce, force the DSN class to
// the reply class, and log.
func (e *eval) rejectText(class errClass, code int, dsn, text string) status {
	warn := e.warnIfReject != 0 && class != classSoftware && class != classResource && class != classData
	whatsup := "reject"
	if warn {
		whatsup = "reject_warning"
	}
	reply := strconv.Itoa(code) + " " + dsn + " " + text
	if code < 400 || code > 599 {
		e.warnf("SMTP reply code configuration error: %s", reply)
		reply = "450 4.7.1 Service unavailable"
	}
	if dsnLen(reply[4:]) == 0 {
		e.warnf("DSN detail code configuration error: %s", reply)
		reply = "450 4.7.1 Service unavailable"
	}
	if len(reply) > 510 {
		reply = reply[:510]
	}
	reply = printable(reply)
	if !warn && e.deferIfReject != nil && reply[0] == '5' {
		d := e.deferIfReject
		e.warnIfReject = 0
		e.deferIfReject = nil
		return e.rejectText(d.class, d.Reply.Code, d.Reply.DSN, d.Reply.Text)
	}
	b := []byte(reply)
	if e.c.cfg.SoftBounce && b[0] == '5' {
		b[0] = '4'
	}
	b[4] = b[0]
	reply = string(b)
	e.logEvent(whatsup, reply)
	if warn {
		return statusDunno
	}
	e.reply = reply
	return statusReject
}

// deferIf arms a deferral, keeping the first reason (defer_if).
func deferIf(slot **Deferral, class errClass, code int, dsn, text string) {
	if *slot == nil {
		*slot = &Deferral{Reply: Reply{Code: code, DSN: dsn, Text: text}, class: class}
	}
}

// deferIfReject arms defer_if_reject with a "<name>: Class rejected: text"
// reason.
func (e *eval) deferIfRejectArm(class errClass, code int, dsn, text string) {
	deferIf(&e.deferIfReject, class, code, dsn, "<"+e.replyName+">: "+e.replyClass+" rejected: "+text)
}

// deferIfPermitArm is DEFER_IF_PERMIT: with a tempfail action of
// defer_if_permit and no warn_if_reject, arm the deferral and go on;
// otherwise reject now.
func (e *eval) deferIfPermitArm(deferAll bool, class errClass, code int, dsn, text string) status {
	full := "<" + e.replyName + ">: " + e.replyClass + " rejected: " + text
	if e.warnIfReject == 0 && !deferAll {
		deferIf(&e.deferIfPermit, class, code, dsn, full)
		return statusDunno
	}
	return e.rejectText(class, code, dsn, full)
}

// permit is smtpd_acl_permit: log the permit when
// smtpd_log_access_permit_actions asks for it.
func (e *eval) permit(ctx context.Context, action, replyClass, replyName, from string) status {
	if e.deferIfPermit == nil && e.c.permitLog != nil {
		if ok, _ := e.c.permitLog.Match(ctx, action); ok {
			text := "action=" + action + " for " + replyClass + "=" + replyName
			if from != "" {
				text += " " + from
			}
			e.logEvent("permit", text)
		}
	}
	return statusOK
}

func (e *eval) logEvent(kind, text string) {
	e.d.Log = append(e.d.Log, LogEntry{Kind: kind, Text: text})
	e.c.log.Info(kind, "where", e.where, "client", e.namaddr(), "text", text)
}

func (e *eval) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.d.Warnings = append(e.d.Warnings, msg)
	e.c.log.Warn(msg)
}

// dsnLen returns the length of the RFC 3463 status code at the start of
// s ("5.7.1"), or 0 when there is none; the code must be followed by a
// space or the end (dsn_valid).
func dsnLen(s string) int {
	if len(s) < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.' {
		return 0
	}
	i := 2
	n := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		n++
	}
	if n == 0 || n > 3 || i >= len(s) || s[i] != '.' {
		return 0
	}
	i++
	n = 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		n++
	}
	if n == 0 || n > 3 {
		return 0
	}
	if i < len(s) && s[i] != ' ' {
		return 0
	}
	return i
}

// splitDSN is dsn_split: a leading status code in text replaces def.
func splitDSN(def, text string) (dsn, rest string) {
	if n := dsnLen(text); n > 0 {
		return text[:n], strings.TrimLeft(text[n:], " \t")
	}
	return def, text
}

// fixDSN is smtpd_dsn_fix: an address status (X.1.Y) is mapped to the
// kind of thing rejected (spec §3.3).
func fixDSN(status, replyClass string) string {
	if len(status) < 5 || status[0] < '0' || status[0] > '9' || status[1:4] != ".1." {
		return status
	}
	micro := status[4:]
	switch replyClass {
	case nameSender:
		switch micro {
		case "1", "4", "6":
			return "4.1.7"
		case "2", "8":
			return "4.1.8"
		case "3", "7":
			return "4.1.7"
		case "5":
			return "4.1.0"
		}
		return "4.1.0"
	case nameRecipient:
		switch micro {
		case "1", "2", "3", "4", "5", "6":
			return "4.1." + micro
		case "7":
			return "4.1.3"
		case "8":
			return "4.1.2"
		}
		return "4.1.0"
	}
	return "4.0.0"
}

// printable replaces control characters with spaces, as Postfix does to
// every reply (valid UTF-8 is kept).
func printable(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] < 0x20 || b[j] == 0x7f {
					b[j] = ' '
				}
			}
			return string(b)
		}
	}
	return s
}
