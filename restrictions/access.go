package restrictions

import (
	"context"
	"strings"

	"github.com/postkit-mail/postkit/maps"
)

// tableFailure is what an access table that fails to answer is taken to
// say (check_access and friends): a 451 4.3.5 in the restriction's own
// words, which warn_if_reject can soften.
const tableFailure = "451 4.3.5 Server configuration error"

// found interprets one access-table search: an error or a match goes
// through tableResult; no match is DUNNO.
func (e *eval) found(ctx context.Context, el *elem, r maps.Result, ok bool, err error, datum, replyName, replyClass string) (status, bool, error) {
	if err != nil {
		e.warnf("%s: table lookup problem: %v", el.arg, err)
		st, err := e.tableResult(ctx, el.arg, tableFailure, datum, replyName, replyClass, e.defACL)
		return st, true, err
	}
	if !ok {
		return statusDunno, false, nil
	}
	st, err := e.tableResult(ctx, el.arg, r.Value, datum, replyName, replyClass, e.defACL)
	return st, true, err
}

// checkAccess looks up one whole key (check_access).
func (e *eval) checkAccess(ctx context.Context, el *elem, key, replyName, replyClass string) (status, bool, error) {
	r, ok, err := maps.List{el.table}.Find(ctx, key)
	return e.found(ctx, el, r, ok, err, key, replyName, replyClass)
}

// checkDomainAccess looks up a host or domain name and its parents
// (check_domain_access).
func (e *eval) checkDomainAccess(ctx context.Context, el *elem, domain, replyName, replyClass string) (status, bool, error) {
	r, ok, err := maps.List{el.table}.FindHostname(ctx, domain, e.c.cfg.AccessParentStyle)
	return e.found(ctx, el, r, ok, err, domain, replyName, replyClass)
}

// checkAddrAccess looks up an IP address and its shorter prefixes
// (check_addr_access).
func (e *eval) checkAddrAccess(ctx context.Context, el *elem, addr, replyName, replyClass string) (status, bool, error) {
	r, ok, err := maps.List{el.table}.FindAddr(ctx, addr)
	return e.found(ctx, el, r, ok, err, addr, replyName, replyClass)
}

// checkNamAddrAccess is check_namadr_access: the name search, then, only
// when the name was not found at all, the address search.
func (e *eval) checkNamAddrAccess(ctx context.Context, el *elem, name, addr, replyName, replyClass string) (status, error) {
	st, hit, err := e.checkDomainAccess(ctx, el, name, replyName, replyClass)
	if err != nil || st != statusDunno || hit {
		return st, err
	}
	st, _, err = e.checkAddrAccess(ctx, el, addr, replyName, replyClass)
	return st, err
}

// checkMailAccess is check_mail_access: the address in its resolved form,
// searched with the access-map key order (user+ext@domain, user@domain,
// domain and parents, user+ext@, user@). An OK for a source-routed
// recipient is downgraded to DUNNO unless allow_untrusted_routing.
func (e *eval) checkMailAccess(ctx context.Context, el *elem, addr, replyName, replyClass string) (status, error) {
	res, err := e.c.dest.resolve(ctx, e, addr, replyClass == nameSender)
	if err != nil {
		st := e.rejectText(classData, 451, "4.3.0", "<"+addr+">: "+tempLookupFail)
		return st, &abort{st: st}
	}
	if !strings.Contains(res.Address, "@") {
		e.warnf("check_mail_access: no @domain in address: %s", res.Address)
		return statusDunno, nil
	}
	strategy := maps.AccessStrategy(e.c.cfg.Addresses.RecipientDelimiter, e.c.cfg.AccessParentStyle)
	r, ok, ferr := maps.List{el.table}.FindAddress(ctx, res.Address, strategy)
	st, _, err := e.found(ctx, el, r, ok, ferr, res.Address, replyName, replyClass)
	if err == nil && st == statusOK && res.Routed && replyClass == nameRecipient && !e.c.cfg.AllowUntrustedRouting {
		return statusDunno, nil
	}
	return st, err
}

// forbidAllowlist refuses an OK from the check_*_{mx,ns,a}_access and
// check_reverse_client_hostname_access families, which look up data the
// client controls (smtpd_check.c forbid_allowlist).
func (e *eval) forbidAllowlist(name string, st status, target string) (status, error) {
	if !e.discard && st == statusOK {
		e.warnf("restriction %s returns OK for %s", name, target)
		e.warnf("this is not allowed for security reasons")
		e.warnf("use DUNNO instead of OK if you want to make an exception")
		return e.serverError()
	}
	return st, nil
}

var accessBuiltins = map[string]*builtin{
	"check_client_access": {arg: argTable, run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		s := e.s
		return e.checkNamAddrAccess(ctx, el, s.clientName(), s.clientAddr(), e.namaddr(), nameClient)
	}},
	"check_reverse_client_hostname_access": {arg: argTable, run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		s := e.s
		st, err := e.checkNamAddrAccess(ctx, el, s.reverseName(), s.clientAddr(), s.reverseName(), nameRevClient)
		if err != nil {
			return st, err
		}
		return e.forbidAllowlist(el.name, st, s.reverseName())
	}},
	"check_helo_access": {arg: argTable, run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if e.s.Helo == "" {
			return statusDunno, nil
		}
		st, _, err := e.checkDomainAccess(ctx, el, e.s.Helo, e.s.Helo, nameHelo)
		return st, err
	}},
	"check_sender_access": {arg: argTable, run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if !hasSender(e.stage) {
			return statusDunno, nil
		}
		if e.s.Sender == "" {
			st, _, err := e.checkAccess(ctx, el, e.c.cfg.NullAccessKey, "", nameSender)
			return st, err
		}
		return e.checkMailAccess(ctx, el, e.s.Sender, e.s.Sender, nameSender)
	}},
	"check_recipient_access": {arg: argTable, run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		rcpt, ok := e.recipient()
		if !ok {
			return statusDunno, nil
		}
		return e.checkMailAccess(ctx, el, rcpt, rcpt, nameRecipient)
	}},
	"check_etrn_access": {arg: argTable, run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if e.s.ETRNDomain == "" {
			return statusDunno, nil
		}
		st, _, err := e.checkDomainAccess(ctx, el, e.s.ETRNDomain, e.s.ETRNDomain, nameETRN)
		return st, err
	}},
	"check_ccert_access": {arg: argTable, run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		t := e.s.TLS
		if t == nil || (t.CertFingerprint == "" && t.PubkeyFingerprint == "") {
			return statusDunno, nil
		}
		for _, fp := range []string{t.CertFingerprint, t.PubkeyFingerprint} {
			if fp == "" {
				continue
			}
			st, _, err := e.checkAccess(ctx, el, fp, t.SubjectCN, nameCcert)
			if err != nil || st != statusDunno {
				return st, err
			}
		}
		return statusDunno, nil
	}},
	"check_sasl_access": {arg: argTable, run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if !e.c.cfg.SASLEnabled {
			e.warnf("restriction `%s' ignored: no SASL support", el.name)
			return statusDunno, nil
		}
		if e.s.SASLUsername == "" {
			return statusDunno, nil
		}
		st, _, err := e.checkAccess(ctx, el, e.s.SASLUsername, saneName(e.s.SASLUsername), nameSASLUser)
		return st, err
	}},
}

// recipient returns the recipient the current stage knows: the RCPT TO
// address, or at DATA and end of data the only recipient.
func (e *eval) recipient() (string, bool) {
	switch e.stage {
	case StageRecipient:
		return e.s.Recipient, true
	case StageData, StageEndOfData:
		if e.s.RecipientCount <= 1 && e.s.Recipient != "" {
			return e.s.Recipient, true
		}
	}
	return "", false
}

// saneName replaces non-printable characters with '_' for replies.
func saneName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '_'
		}
	}
	return string(b)
}
