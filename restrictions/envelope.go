package restrictions

import (
	"github.com/postkit-mail/postkit/address"
)

// ParseEnvelope parses the address argument of MAIL FROM (StageSender) or
// RCPT TO (StageRecipient) as smtpd does before any restriction runs:
// with Config.StrictRFC821Envelopes (strict_rfc821_envelopes) only
// "<address>" is accepted; otherwise RFC 5322 forms with comments or a
// phrase, or a bare address, as long as there is exactly one address. A
// source route is dropped. The null address is allowed for MAIL only. It
// returns the address in internal form (unquoted local part), or the
// reply Postfix sends for bad syntax.
func (c *Checker) ParseEnvelope(stage Stage, arg string) (string, Reply, bool) {
	p, err := address.ParsePath(arg, address.PathOptions{
		Strict:    c.cfg.StrictRFC821Envelopes,
		AllowNull: stage == StageSender,
	})
	if err != nil {
		if stage == StageSender {
			return "", Reply{Code: 501, DSN: "5.1.7", Text: "Bad sender address syntax"}, false
		}
		return "", Reply{Code: 501, DSN: "5.1.3", Text: "Bad recipient address syntax"}, false
	}
	return p.Address.Internal(), Reply{}, true
}
