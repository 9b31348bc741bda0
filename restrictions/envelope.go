package restrictions

import (
	"context"
	"strings"

	"github.com/postkit-mail/postkit/address"
)

// ParseEnvelope parses the address argument of MAIL FROM (StageSender) or
// RCPT TO (StageRecipient) as smtpd does before any restriction runs
// (smtpd.c extract_addr and smtpd_check_addr):
//
//   - with Config.StrictRFC821Envelopes (strict_rfc821_envelopes) only
//     "<address>" is accepted; otherwise also RFC 5322 forms with
//     comments or a phrase, or a bare address, as long as there is exactly
//     one address;
//   - a source route is dropped; the null address is allowed for MAIL;
//   - the domain is judged after canonicalization by the address resolver
//     (a trailing dot is fine, "user@exa mple" is not), and without
//     SMTPUTF8 it must be ASCII.
//
// It returns the address in internal form (unquoted local part), or the
// reply Postfix sends for bad syntax.
func (c *Checker) ParseEnvelope(ctx context.Context, stage Stage, arg string, smtputf8 bool) (string, Reply, bool) {
	bad := Reply{Code: 501, DSN: "5.1.3", Text: "Bad recipient address syntax"}
	if stage == StageSender {
		bad = Reply{Code: 501, DSN: "5.1.7", Text: "Bad sender address syntax"}
	}
	p, err := address.ParsePath(arg, address.PathOptions{
		Strict:        c.cfg.StrictRFC821Envelopes,
		AllowNull:     stage == StageSender,
		NoDomainCheck: true,
	})
	if err != nil {
		return "", bad, false
	}
	addr := p.Address.Internal()
	if addr == "" {
		return "", Reply{}, true
	}
	res, err := c.dest.resolver.Resolve(ctx, "", addr)
	if err != nil {
		return "", Reply{Code: 451, DSN: "4.3.0", Text: "<" + addr + ">: Temporary lookup failure"}, false
	}
	if res.Invalid {
		return "", bad, false
	}
	if !smtputf8 {
		if i := strings.LastIndexByte(res.Address, '@'); i >= 0 && !isASCII(res.Address[i+1:]) {
			return "", bad, false
		}
	}
	return addr, Reply{}, true
}
