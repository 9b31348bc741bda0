package restrictions

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/address"
)

var coreBuiltins = map[string]*builtin{
	"permit": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		return e.permit(ctx, el.name, e.replyClass, e.replyName, ""), nil
	}},
	"reject": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		return e.reject(classPolicy, e.c.cfg.RejectCode, "5.7.1", "Access denied"), nil
	}},
	"defer": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		return e.reject(classPolicy, e.c.cfg.DeferCode, "4.3.2", "Try again later"), nil
	}},
	"defer_if_permit": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		return e.deferIfPermitArm(false, classPolicy, 450, "4.7.0", "defer_if_permit requested"), nil
	}},
	"defer_if_reject": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		e.deferIfRejectArm(classPolicy, 450, "4.7.0", "defer_if_reject requested")
		return statusDunno, nil
	}},
	"sleep": {arg: argNumber, run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if el.noArg || !allDigits(el.arg) {
			e.warnf("restriction sleep must be followed by number")
			return e.serverError()
		}
		n, _ := strconv.Atoi(el.arg)
		sleep := e.c.cfg.Sleep
		if sleep == nil {
			sleep = sleepCtx
		}
		if err := sleep(ctx, time.Duration(n)*time.Second); err != nil {
			return statusDunno, err
		}
		return statusDunno, nil
	}},
	"reject_plaintext_session": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if e.s.TLS == nil {
			return e.rejectText(classPolicy, e.c.cfg.PlaintextRejectCode, "4.7.1", "Session encryption is required"), nil
		}
		return statusDunno, nil
	}},
	"reject_unauth_pipelining": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if e.s.IllegalPipelining {
			return e.reject(classProtocol, 503, "5.5.0", "Improper use of SMTP command pipelining"), nil
		}
		return statusDunno, nil
	}},
	"permit_mynetworks": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		ok, err := e.c.mynetworks.MatchHostAddr(ctx, e.s.clientName(), e.s.ClientAddr)
		if err != nil {
			return statusDunno, err
		}
		if ok {
			return e.permit(ctx, el.name, nameClient, e.namaddr(), ""), nil
		}
		return statusDunno, nil
	}},
	"permit_inet_interfaces": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if e.s.ClientAddr.IsValid() && containsAddr(e.c.cfg.OwnAddrs, e.s.ClientAddr) {
			return e.permit(ctx, el.name, nameClient, e.namaddr(), ""), nil
		}
		return statusDunno, nil
	}},
	"permit_sasl_authenticated": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if e.c.cfg.SASLEnabled && e.s.SASLUsername != "" {
			return e.permit(ctx, el.name, nameClient, e.namaddr(), ""), nil
		}
		return statusDunno, nil
	}},
	"permit_tls_all_clientcerts": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if t := e.s.TLS; t != nil && t.PeerCertVerified {
			return e.permit(ctx, el.name, nameClient, e.namaddr(), ""), nil
		}
		return statusDunno, nil
	}},
	"permit_tls_clientcerts": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		t := e.s.TLS
		if t == nil || !t.PeerCertVerified || len(e.c.ccerts) == 0 {
			return statusDunno, nil
		}
		for _, fp := range []string{t.CertFingerprint, t.PubkeyFingerprint} {
			if fp == "" {
				continue
			}
			_, ok, err := e.c.ccerts.Find(ctx, fp)
			if err != nil {
				return statusDunno, err
			}
			if ok {
				return e.permit(ctx, el.name, nameClient, e.namaddr(), ""), nil
			}
		}
		return statusDunno, nil
	}},
	"reject_multi_recipient_bounce": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		limit := 1
		if e.stage == StageRecipient {
			limit = 0
		}
		if hasSender(e.stage) && e.s.Sender == "" && e.s.RecipientCount > limit {
			return e.reject(classPolicy, e.c.cfg.MultiRecipientBounceRejectCode, "5.5.3", "Multi-recipient bounce"), nil
		}
		return statusDunno, nil
	}},
	"reject_unknown_client_hostname": {run: rejectUnknownClient},
	"reject_unknown_client":          {run: rejectUnknownClient},
	"reject_unknown_reverse_client_hostname": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if e.s.ReverseNameStatus != NameOK || e.s.ReverseName == "" || e.s.ReverseName == "unknown" {
			code := 450
			if e.s.ReverseNameStatus == NamePermFail || e.s.ReverseNameStatus == NameOK {
				code = e.c.cfg.UnknownClientRejectCode
			}
			return e.rejectText(classPolicy, code, "4.7.1",
				"Client host rejected: cannot find your reverse hostname, ["+e.s.clientAddr()+"]"), nil
		}
		return statusDunno, nil
	}},
	// permit_naked_ip_address is deprecated since Postfix 2.0; 3.7 still
	// permits a HELO that is a bare IP address, with a warning.
	"permit_naked_ip_address": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		e.warnf("restriction %s is deprecated. Use permit_mynetworks or permit_sasl_authenticated instead", el.name)
		helo := e.s.Helo
		if helo == "" || strings.Trim(helo, "0123456789.:") != "" {
			return statusDunno, nil
		}
		if st := e.rejectInvalidHostaddr(helo); st != statusDunno {
			return st, nil
		}
		return e.permit(ctx, el.name, nameHelo, helo, ""), nil
	}},
	"reject_invalid_helo_hostname":  {run: rejectInvalidHelo},
	"reject_invalid_hostname":       {run: rejectInvalidHelo},
	"reject_non_fqdn_helo_hostname": {run: rejectNonFQDNHelo},
	"reject_non_fqdn_hostname":      {run: rejectNonFQDNHelo},
	"reject_non_fqdn_sender": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if !hasSender(e.stage) || e.s.Sender == "" {
			return statusDunno, nil
		}
		return e.rejectNonFQDNAddress(e.s.Sender, e.s.Sender, nameSender), nil
	}},
	"reject_non_fqdn_recipient": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		rcpt, ok := e.recipient()
		if !ok {
			return statusDunno, nil
		}
		return e.rejectNonFQDNAddress(rcpt, rcpt, nameRecipient), nil
	}},
}

// classProtocol is a protocol error; it is a policy class as far as
// warn_if_reject is concerned.
const classProtocol = classPolicy

func rejectUnknownClient(ctx context.Context, e *eval, el *elem) (status, error) {
	if e.s.ClientNameStatus != NameOK || e.s.ClientName == "" || e.s.ClientName == "unknown" {
		code := 450
		if e.s.ClientNameStatus >= NamePermFail || e.s.ClientNameStatus == NameOK {
			code = e.c.cfg.UnknownClientRejectCode
		}
		// RFC 7372: 4.7.25 reverse DNS validation failed.
		return e.rejectText(classPolicy, code, "4.7.25",
			"Client host rejected: cannot find your hostname, ["+e.s.clientAddr()+"]"), nil
	}
	return statusDunno, nil
}

// heloName returns the HELO argument to judge as a name; done is set when
// there is none, or when it is an address literal, which is judged here.
func (e *eval) heloName() (helo, name string, st status, done bool) {
	helo = e.s.Helo
	switch {
	case helo == "":
		return "", "", statusDunno, true
	case helo[0] == '[':
		return helo, "", e.rejectInvalidHostaddr(helo), true
	}
	return helo, trimOneDot(helo), statusDunno, false
}

func rejectInvalidHelo(ctx context.Context, e *eval, el *elem) (status, error) {
	helo, name, st, done := e.heloName()
	if done {
		return st, nil
	}
	if address.ValidHostname(name) != nil && !validHostaddr(name) {
		return e.rejectText(classPolicy, e.c.cfg.InvalidHostnameRejectCode, "5.5.2",
			"<"+helo+">: "+nameHelo+" rejected: Invalid name"), nil
	}
	return statusDunno, nil
}

func rejectNonFQDNHelo(ctx context.Context, e *eval, el *elem) (status, error) {
	helo, name, st, done := e.heloName()
	if done {
		return st, nil
	}
	if !validUTF8Hostname(e.s.SMTPUTF8, name) || !strings.Contains(name, ".") {
		return e.rejectText(classPolicy, e.c.cfg.NonFQDNRejectCode, "5.5.2",
			"<"+helo+">: "+nameHelo+" rejected: need fully-qualified hostname"), nil
	}
	return statusDunno, nil
}

// rejectInvalidHostaddr checks a "[address]" HELO argument.
func (e *eval) rejectInvalidHostaddr(helo string) status {
	addr := helo
	if len(addr) > 2 && addr[0] == '[' && addr[len(addr)-1] == ']' {
		addr = addr[1 : len(addr)-1]
	}
	if !validMailhostAddr(addr) {
		return e.rejectText(classPolicy, e.c.cfg.InvalidHostnameRejectCode, "5.5.2",
			"<"+helo+">: "+nameHelo+" rejected: invalid ip address")
	}
	return statusDunno
}

// rejectNonFQDNAddress is reject_non_fqdn_address: the domain of addr is
// missing, invalid or without a dot. Address literals are not checked.
func (e *eval) rejectNonFQDNAddress(addr, replyName, replyClass string) status {
	domain := ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		domain = addr[i+1:]
	}
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		return statusDunno
	}
	d := trimOneDot(domain)
	if d == "" || !validUTF8Hostname(e.s.SMTPUTF8, d) || !strings.Contains(d, ".") {
		return e.rejectText(classPolicy, e.c.cfg.NonFQDNRejectCode, "4.5.2",
			"<"+replyName+">: "+replyClass+" rejected: need fully-qualified address")
	}
	return statusDunno
}

// trimOneDot removes one trailing dot, but not from a name ending in two
// (dup_if_truncate).
func trimOneDot(name string) string {
	if n := len(name); n > 1 && name[n-1] == '.' && name[n-2] != '.' {
		return name[:n-1]
	}
	return name
}

// validHostaddr reports whether s is a bare IPv4 or IPv6 address.
func validHostaddr(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

// validMailhostAddr accepts the inside of an address literal: an IPv4
// address, or "IPv6:" and an IPv6 address (valid_mailhost_addr).
func validMailhostAddr(s string) bool {
	if len(s) > 5 && strings.EqualFold(s[:5], "IPv6:") {
		a, err := netip.ParseAddr(s[5:])
		return err == nil && a.Is6() && a.Zone() == ""
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4()
}

// validUTF8Hostname is valid_utf8_hostname: with SMTPUTF8, a name with
// non-ASCII labels is checked after conversion to A-labels.
func validUTF8Hostname(smtputf8 bool, name string) bool {
	if smtputf8 {
		return address.ValidDomain(name) == nil && !address.IsLiteral(name)
	}
	return address.ValidHostname(name) == nil
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	a = a.Unmap()
	for _, b := range list {
		if b.Unmap() == a {
			return true
		}
	}
	return false
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
