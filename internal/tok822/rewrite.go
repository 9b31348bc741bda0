package tok822

import (
	"context"
	"fmt"
	"strings"

	"github.com/postkit-mail/postkit/address"
)

// Context is a rewriting context of trivial-rewrite (spec §6.1): the
// local one has $myorigin and $mydomain as Origin and Domain; the remote
// one (remote_header_rewrite_domain) has that domain as both.
type Context struct {
	Origin, Domain string
	// append_at_myorigin, append_dot_mydomain, swap_bangpath,
	// allow_percent_hack.
	AppendAtOrigin, AppendDotDomain, SwapBangPath, AllowPercentHack bool
}

// Rewrite brings the tokens of one address to canonical form
// (rewrite_tree), in this order: a lone '@' becomes the null address; a
// source route (@a,@b:user@c, RFC 5321 section 4.1.1.3) is removed; an
// address without '@' gets swap_bangpath (site!user becomes user@site),
// else allow_percent_hack (user%site becomes user@site), else
// append_at_myorigin; append_dot_mydomain adds .Domain to a domain
// without a dot or literal; one trailing dot is removed (not from "x.."
// or "x@."). toks is not modified.
func (c *Context) Rewrite(toks []Token) []Token {
	n := len(toks)
	if n == 0 || n == 1 && toks[0].Type == QString && toks[0].Text == "" {
		return toks
	}
	if n == 1 && toks[0].Type == '@' {
		return []Token{{Type: QString}}
	}
	if toks[0].Type == '@' {
		if i := Find(toks, ':'); i >= 0 && i != n-1 {
			toks = toks[i+1:]
		}
	}
	if RFind(toks, '@') < 0 {
		if bang := Find(toks, '!'); c.SwapBangPath && bang >= 0 {
			// Only the first '!' counts.
			out := make([]Token, 0, len(toks)+1)
			out = append(out, toks[bang+1:]...)
			if bang == 0 {
				for i := 1; i < len(out); i++ {
					out[i].Glue = true
				}
			}
			out = append(out, Token{Type: '@'})
			toks = append(out, toks[:bang]...)
		} else if pct := RFind(toks, '%'); c.AllowPercentHack && pct >= 0 {
			toks = append([]Token(nil), toks...)
			toks[pct] = Token{Type: '@'}
		} else if c.AppendAtOrigin && c.Origin != "" {
			toks = append(append(toks[:len(toks):len(toks)], Token{Type: '@'}), Scan(c.Origin)...)
		}
	}
	if at := RFind(toks, '@'); c.AppendDotDomain && c.Domain != "" && at >= 0 && at != len(toks)-1 &&
		Find(toks[at:], DomLit) < 0 && Find(toks[at:], '.') < 0 {
		toks = append(append(toks[:len(toks):len(toks)], Token{Type: '.'}), Scan(c.Domain)...)
	}
	if n := len(toks); n >= 2 && toks[n-1].Type == '.' && toks[n-2].Type != '.' && toks[n-2].Type != '@' {
		toks = toks[:n-1]
	}
	return toks
}

// Resolver is the first part of trivial-rewrite's resolve_addr, the part
// that works on tokens: while the domain is local it is removed and the
// routing left in the local part is followed.
type Resolver struct {
	// Context is the local rewriting context, applied to what is left
	// after a local domain is removed.
	Context
	// MyHostname completes an address left with no domain at all.
	MyHostname string
	// ResolveDequoted (resolve_dequoted_address) looks for routing
	// operators inside a quoted local part too; ResolveNullDomain
	// (resolve_null_domain) drops a trailing '@'.
	ResolveDequoted, ResolveNullDomain bool
	// EmptyAddressRecipient replaces an empty local part
	// (empty_address_recipient).
	EmptyAddressRecipient string
	// IsLocal is resolve_local: the domain (internal form) is this
	// machine's ($mydestination, [address] of inet_interfaces or
	// proxy_interfaces). An error is a table that failed.
	IsLocal func(ctx context.Context, domain string) (bool, error)
	// Warn receives Postfix's warning about an address that does not
	// converge. Nil: no warning.
	Warn func(msg string)
}

// Strip removes local domains from addr (internal form) and follows the
// routing behind them until a remote domain or a bare local part is
// left: user%remote (allow_percent_hack), remote!user (swap_bangpath),
// user@remote in the local part, and with ResolveDequoted the same
// inside a quoted local part, so that "user@remote"@local cannot relay.
// An empty local part becomes EmptyAddressRecipient. A recipient left
// without a domain gets back the last local domain removed, or else
// @MyHostname, which is remote unless IsLocal says otherwise.
//
// It returns the recipient in internal form and whether its domain is
// remote. An error comes from IsLocal or ctx.
func (r *Resolver) Strip(ctx context.Context, addr string) (string, bool, error) {
	toks := Scan(address.Quote(addr))
	var saved []Token // the last local @domain removed
	remote := false
	loopMax := len(addr) + 100
	for loop := 0; ; loop++ {
		if err := ctx.Err(); err != nil {
			return "", false, err
		}
		if loop > loopMax {
			if r.Warn != nil {
				r.Warn(fmt.Sprintf("resolve_addr: <%s>: giving up after %d iterations", addr, loop))
			}
			break
		}
		n := len(toks)
		if n >= 2 && toks[n-1].Type == '.' && RFind(toks, '@') >= 0 && toks[n-2].Type != '.' && toks[n-2].Type != '@' {
			toks = toks[:n-1]
		}
		if n := len(toks); r.ResolveNullDomain && n > 0 && toks[n-1].Type == '@' {
			toks = toks[:n-1]
		}
		if at := RFind(toks, '@'); at >= 0 {
			if at+1 < len(toks) {
				local, err := r.IsLocal(ctx, Internalize(toks[at+1:]))
				if err != nil {
					return "", false, err
				}
				if !local {
					remote = true
					break
				}
			}
			saved = append([]Token(nil), toks[at:]...)
			toks = toks[:at:at]
		}
		if RFind(toks, '@') >= 0 || r.SwapBangPath && RFind(toks, '!') >= 0 ||
			r.AllowPercentHack && RFind(toks, '%') >= 0 {
			toks = r.Rewrite(toks)
			continue
		}
		if r.ResolveDequoted && len(toks) == 1 && toks[0].Type == QString {
			local := toks[0].Text
			oper := strings.LastIndexByte(local, '@')
			if oper < 0 && r.AllowPercentHack {
				oper = strings.LastIndexByte(local, '%')
			}
			if oper < 0 && r.SwapBangPath {
				oper = strings.LastIndexByte(local, '!')
			}
			if oper >= 0 {
				op := local[oper]
				if op == '%' {
					local = local[:oper] + "@" + local[oper+1:]
					op = '@'
				}
				if op == '@' {
					local = address.Quote(local)
				}
				toks = r.Rewrite(Scan(local))
				continue
			}
		}
		if len(toks) == 1 && toks[0].Type == QString && toks[0].Text == "" {
			toks = nil
		}
		if len(toks) == 0 {
			toks = Scan(r.EmptyAddressRecipient)
		}
		break
	}
	if !remote {
		if saved != nil {
			toks = append(toks, saved...)
		} else {
			// No domain at all: the address is at $myhostname, which is
			// local only if mydestination says so (Postfix 3.7 gives the
			// default class otherwise).
			toks = append(append(toks, Token{Type: '@'}), Scan(r.MyHostname)...)
			local, err := r.IsLocal(ctx, r.MyHostname)
			if err != nil {
				return "", false, err
			}
			remote = !local
		}
	}
	return Internalize(toks), remote, nil
}
