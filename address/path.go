package address

import (
	"errors"
	"fmt"
	"strings"
)

// Path is the address of an SMTP MAIL FROM or RCPT TO command.
type Path struct {
	// Address is the mailbox in internal form; the null path "<>" gives
	// the zero Address.
	Address Address
	// Route holds the domains of an RFC 5321 section 4.1.2 source route
	// ("<@a,@b:user@c>" gives ["a", "b"]). Servers must accept and ignore
	// it (RFC 5321 appendix C); Postfix's trivial-rewrite drops it.
	Route []string
}

// PathOptions select how strict ParsePath is.
type PathOptions struct {
	// Strict is strict_rfc821_envelopes = yes: the path must be in angle
	// brackets and hold nothing but an RFC 5321 path (no comments, no
	// display name, no whitespace outside quoted strings). With the
	// default (no), Postfix also accepts a bare address and RFC 5322 forms
	// such as "Name <a@b>" or "a@b (comment)", as long as there is exactly
	// one address.
	Strict bool
	// AllowNull accepts the null path "<>" (MAIL FROM; not RCPT TO).
	AllowNull bool
	// NoDomainCheck leaves the domain unchecked, for callers that check it
	// after canonicalization as Postfix does (smtpd accepts
	// "user@example.com." and lets trivial-rewrite judge the domain).
	NoDomainCheck bool
}

// ParsePath parses the address argument of MAIL FROM or RCPT TO, the text
// after the colon without ESMTP parameters ("<user@example.com>"). The
// domain, if any, must be a valid hostname, U-label name or address
// literal. An address without a domain is accepted (Postfix appends
// $myorigin later).
func ParsePath(s string, opts PathOptions) (Path, error) {
	p, err := parsePath(s, opts)
	if err != nil {
		return Path{}, fmt.Errorf("bad address syntax %q: %w", truncate(s), err)
	}
	if p.Address.IsNull() && !opts.AllowNull {
		return Path{}, fmt.Errorf("bad address syntax %q: null address not allowed here", truncate(s))
	}
	return p, nil
}

func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

func parsePath(s string, opts PathOptions) (Path, error) {
	if strings.TrimSpace(s) == "" {
		return Path{}, errors.New("missing address")
	}
	if opts.Strict {
		if len(s) < 2 || s[0] != '<' || s[len(s)-1] != '>' {
			return Path{}, errors.New("address must be enclosed in <>")
		}
		toks, err := scan822(s[1 : len(s)-1])
		if err != nil {
			return Path{}, err
		}
		for _, t := range toks {
			if t.kind == tComment {
				return Path{}, errors.New("comment not allowed")
			}
			if t.is('<') || t.is('>') {
				return Path{}, errors.New("nested <>")
			}
		}
		for _, t := range toks {
			if t.spaceAfter {
				return Path{}, errors.New("whitespace not allowed")
			}
		}
		mb, err := routeAddr(toks)
		if err != nil {
			return Path{}, err
		}
		if mb.Address.Local == "" && mb.Address.Domain != "" {
			return Path{}, errors.New("empty local part")
		}
		return checkPath(Path{Address: mb.Address, Route: mb.Route}, opts)
	}
	t := strings.TrimSpace(s)
	if t == "<>" {
		return Path{}, nil
	}
	// Postfix's lenient parser drops a '>' that closes nothing:
	// "MAIL FROM:a@example.com>" is accepted as a@example.com (seen with
	// Postfix 3.7; smtpserver/testdata/oracle/protocol-syntax.txt).
	if !strings.Contains(t, "<") && strings.HasSuffix(t, ">") {
		t = strings.TrimRight(t[:len(t)-1], " \t")
	}
	list, err := ParseList(t)
	if err != nil {
		return Path{}, errors.New(strings.TrimPrefix(err.Error(), "address list: "))
	}
	switch len(list) {
	case 0:
		return Path{}, errors.New("no address")
	case 1:
	default:
		return Path{}, errors.New("more than one address")
	}
	if list[0].Group != "" {
		return Path{}, errors.New("group syntax not allowed")
	}
	return checkPath(Path{Address: list[0].Address, Route: list[0].Route}, opts)
}

func checkPath(p Path, opts PathOptions) (Path, error) {
	a := p.Address
	if a.IsNull() {
		return p, nil
	}
	if a.Domain != "" && !opts.NoDomainCheck {
		if err := ValidDomain(a.Domain); err != nil {
			return Path{}, err
		}
	} else if a.Local == "" {
		return Path{}, errors.New("empty address")
	}
	return p, nil
}
