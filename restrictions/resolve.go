package restrictions

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/maps"
)

// AddressClass is the class of destination an address resolves to
// (ADDRESS_CLASS_README; trivial-rewrite(8) "ADDRESS CLASSES").
type AddressClass int

// The address classes, in the order trivial-rewrite tests them after the
// local class.
const (
	// ClassDefault: any other domain, delivered with $default_transport.
	ClassDefault AddressClass = iota
	// ClassLocal: the domain matches $mydestination, or is an address
	// literal of $inet_interfaces or $proxy_interfaces.
	ClassLocal
	// ClassVirtualAlias: the domain matches $virtual_alias_domains.
	ClassVirtualAlias
	// ClassVirtualMailbox: the domain matches $virtual_mailbox_domains.
	ClassVirtualMailbox
	// ClassRelay: the domain matches $relay_domains.
	ClassRelay
)

var classNames = [...]string{"default", "local", "virtual alias", "virtual mailbox", "relay"}

func (c AddressClass) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return "class?"
}

// Final reports whether this machine is the final destination of the class
// (Postfix's RESOLVE_CLASS_FINAL: local, virtual alias, virtual mailbox).
func (c AddressClass) Final() bool {
	return c == ClassLocal || c == ClassVirtualAlias || c == ClassVirtualMailbox
}

// Resolved is what the address resolver says about an envelope address
// (trivial-rewrite's resolve reply, as smtpd sees it).
type Resolved struct {
	// Address is the address in canonical form, case-folded: user@domain,
	// source routes and local-domain routing operators removed
	// ("joe%remote@localhost" becomes "joe@remote").
	Address string
	// Routed: the local part still holds a routing operator ('@', '!' or
	// '%'), as in "user%host@relay.example". smtpd does not trust such
	// recipients for relay authorization.
	Routed bool
	// Class is the domain's address class.
	Class AddressClass
	// Final is Class.Final(): this machine is the final destination.
	Final bool
	// Transport and Nexthop are the delivery transport and next hop the
	// address class gives ("smtp", "example.com"; "error", "User unknown in
	// virtual alias table"; "retry", reason). Empty for an invalid address.
	// An error or retry next hop may start with an RFC 3463 status code
	// ("5.1.1 User unknown in virtual alias table").
	Transport string
	Nexthop   string
	// Invalid: the domain is neither a valid hostname nor a valid address
	// literal, or the address starts with '-' while allow_min_user = no
	// (Postfix's RESOLVE_FLAG_ERROR; smtpd answers "501 5.1.3 Bad
	// recipient address syntax" before any restriction runs).
	Invalid bool
}

// AddressResolver resolves an envelope address the way trivial-rewrite(8)
// does for smtpd: bring it to canonical form in the local rewriting
// context, then find its address class, transport and next hop. The
// sender is the envelope sender, for sender-dependent routing (empty when
// not known). An error means a table lookup failed; smtpd then answers
// "451 4.3.0 <address>: Temporary lookup failure".
//
// The built-in resolver (AddressConfig.Resolver nil) implements
// trivial-rewrite's rewrite and resolve steps without transport_maps,
// relocated_maps and sender-dependent routing; a routing package can
// supply the complete one.
type AddressResolver interface {
	Resolve(ctx context.Context, sender, addr string) (Resolved, error)
}

// Resolver returns the address resolver the Checker uses: AddressConfig's
// Resolver, or the built-in one made from the AddressConfig values. The SMTP
// server uses it for smtpd_check_addr's address syntax check.
func (c *Checker) Resolver() AddressResolver { return c.dest.resolver }

// tok822 token types other than single-character operators (those are the
// operator byte itself).
const (
	tkAtom = 256 + iota
	tkQString
	tkDomLit
	tkComment
)

// tok is one RFC 822 token as Postfix's tok822_scan makes it, with the
// operators '%', '!' and '|' added to the RFC 822 specials.
type tok struct {
	t int
	s string
}

// opChars are tok822's single-character operators: "|%!" and the RFC 822
// specials.
const opChars = "|%!()<>@,;:\\\".[]"

func isOpChar(c byte) bool { return strings.IndexByte(opChars, c) >= 0 }

func isSpaceTabCRLF(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// scan822 tokenizes an address in external (quoted) form (tok822_scan).
func scan822(s string) []tok {
	toks := make([]tok, 0, 8)
	var b strings.Builder
	// collect reads up to a character for which stop is true, honouring
	// backslash escapes and turning white space into spaces (COLLECT).
	collect := func(i int, stop func(byte) bool) (string, int) {
		b.Reset()
		for i < len(s) {
			c := s[i]
			if c == '\\' {
				i++
				if i >= len(s) {
					break
				}
				c = s[i]
			} else if stop(c) {
				break
			}
			if isSpaceTabCRLF(c) {
				c = ' '
			}
			b.WriteByte(c)
			i++
		}
		return b.String(), i
	}
	for i := 0; i < len(s); {
		c := s[i]
		i++
		switch {
		case isSpaceTabCRLF(c):
			continue
		case c == '(':
			// Comments nest; they are kept in external form.
			b.Reset()
			b.WriteByte('(')
			level := 1
			for i < len(s) {
				ch := s[i]
				b.WriteByte(ch)
				i++
				if ch == '(' {
					level++
				} else if ch == ')' {
					level--
					if level == 0 {
						break
					}
				} else if ch == '\\' {
					if i >= len(s) {
						break
					}
					b.WriteByte(s[i])
					i++
				}
			}
			toks = append(toks, tok{t: tkComment, s: b.String()})
		case c == '[':
			var text string
			text, i = collect(i, func(ch byte) bool { return ch == ']' })
			if i < len(s) {
				i++
			}
			toks = append(toks, tok{t: tkDomLit, s: text})
		case c == '"':
			var text string
			text, i = collect(i, func(ch byte) bool { return ch == '"' })
			if i < len(s) {
				i++
			}
			toks = append(toks, tok{t: tkQString, s: text})
		case c != '\\' && isOpChar(c):
			toks = append(toks, tok{t: int(c)})
		default:
			var text string
			text, i = collect(i-1, func(ch byte) bool { return isSpaceTabCRLF(ch) || isOpChar(ch) })
			t := tkAtom
			// An atom that holds specials (after backslash escapes) is
			// quoted when externalized (tok822_quote_atom).
			for j := 0; j < len(text); j++ {
				if ch := text[j]; ch == ' ' || ch < 0x20 || ch == 0x7f || isOpChar(ch) {
					t = tkQString
					break
				}
			}
			toks = append(toks, tok{t: t, s: text})
		}
	}
	return toks
}

func nonOperator(t int) bool {
	return t == tkAtom || t == tkQString || t == tkComment || t == tkDomLit
}

// internalize822 turns tokens into an internal-form string
// (tok822_internalize): no quoting, a space between adjacent words.
func internalize822(toks []tok) string {
	var b strings.Builder
	for i, t := range toks {
		switch t.t {
		case tkAtom, tkQString, tkComment:
			b.WriteString(t.s)
		case tkDomLit:
			b.WriteByte('[')
			b.WriteString(t.s)
			b.WriteByte(']')
		default:
			b.WriteByte(byte(t.t))
		}
		if i+1 < len(toks) {
			next := toks[i+1].t
			if t.t == ',' || next == '<' || nonOperator(t.t) && nonOperator(next) {
				b.WriteByte(' ')
			}
		}
	}
	return b.String()
}

func rfindTok(toks []tok, t int) int {
	for i := len(toks) - 1; i >= 0; i-- {
		if toks[i].t == t {
			return i
		}
	}
	return -1
}

func findTok(toks []tok, t int) int {
	for i, x := range toks {
		if x.t == t {
			return i
		}
	}
	return -1
}

// builtinResolver is trivial-rewrite's rewrite (local context) and resolve
// steps, configured from AddressConfig.
type builtinResolver struct {
	cfg     *AddressConfig
	log     *slog.Logger
	mydest  *maps.MatchList // string list: exact names and table keys
	alias   *maps.MatchList // virtual_alias_domains, string list
	mailbox *maps.MatchList // virtual_mailbox_domains, string list
	relay   *maps.MatchList // relay_domains, domain list
	own     []netip.Addr    // inet_interfaces and proxy_interfaces
}

// rewriteTree is trivial-rewrite's rewrite_tree in the local context
// (spec §6.1): strip a source route; give an address without '@' a domain
// (bang path, percent hack or @$myorigin); optionally append .$mydomain;
// strip one trailing dot.
func (r *builtinResolver) rewriteTree(toks []tok) []tok {
	n := len(toks)
	if n == 0 {
		return toks
	}
	if n == 1 && toks[0].t == tkQString && toks[0].s == "" {
		return toks
	}
	if n == 1 && toks[0].t == '@' {
		return []tok{{t: tkQString}}
	}
	// RFC 5321 section 4.1.1.3: "@a,@b:user@c" is delivered as user@c.
	if toks[0].t == '@' {
		if c := findTok(toks, ':'); c >= 0 && c != n-1 {
			toks = toks[c+1:]
		}
	}
	if rfindTok(toks, '@') < 0 {
		if bang := findTok(toks, '!'); r.cfg.SwapBangpath && bang >= 0 {
			// site!user becomes user@site.
			out := make([]tok, 0, len(toks))
			out = append(out, toks[bang+1:]...)
			out = append(out, tok{t: '@'})
			toks = append(out, toks[:bang]...)
		} else if pct := rfindTok(toks, '%'); r.cfg.AllowPercentHack && pct >= 0 {
			toks = append([]tok(nil), toks...)
			toks[pct].t = '@'
		} else if r.cfg.AppendAtMyorigin && r.cfg.Myorigin != "" {
			toks = append(append(toks[:len(toks):len(toks)], tok{t: '@'}), scan822(r.cfg.Myorigin)...)
		}
	}
	if at := rfindTok(toks, '@'); r.cfg.AppendDotMydomain && r.cfg.Mydomain != "" && at >= 0 && at != len(toks)-1 &&
		findTok(toks[at:], tkDomLit) < 0 && findTok(toks[at:], '.') < 0 {
		toks = append(append(toks[:len(toks):len(toks)], tok{t: '.'}), scan822(r.cfg.Mydomain)...)
	}
	if n := len(toks); n >= 2 && toks[n-1].t == '.' && toks[n-2].t != '.' && toks[n-2].t != '@' {
		toks = toks[:n-1]
	}
	return toks
}

// resolveLocal is resolve_local(3): the domain matches $mydestination, or
// is an address literal of one of this machine's addresses. One trailing
// dot is ignored.
func (r *builtinResolver) resolveLocal(ctx context.Context, domain string) (bool, error) {
	if strings.HasSuffix(domain, ".") {
		domain = domain[:len(domain)-1]
	}
	if domain == "" || strings.HasSuffix(domain, ".") {
		return false, nil
	}
	if r.mydest != nil {
		ok, err := r.mydest.Match(ctx, domain)
		if err != nil {
			return false, fmt.Errorf("mydestination lookup failure: %w", err)
		}
		if ok {
			return true, nil
		}
	}
	if len(domain) > 2 && domain[0] == '[' && domain[len(domain)-1] == ']' {
		if a, ok := mailhostAddr(domain[1 : len(domain)-1]); ok {
			for _, own := range r.own {
				if own == a {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// mailhostAddr parses the inside of an address literal: IPv4, or "IPv6:"
// and an IPv6 address (valid_mailhost_addr).
func mailhostAddr(s string) (netip.Addr, bool) {
	if len(s) > 5 && strings.EqualFold(s[:5], "IPv6:") {
		a, err := netip.ParseAddr(s[5:])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// simpleAddr reports whether the resolver may skip tokenizing addr: a
// dot-string local part without routing operators and a domain of
// hostname characters. Such an address comes out of rewrite and resolve
// with only its domain changed, which resolveSimple does directly.
func simpleAddr(addr string) (local, domain string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", false
	}
	local, domain = addr[:at], addr[at+1:]
	if address.NeedsQuoting(local) || strings.ContainsAny(local, "%!|") {
		return "", "", false
	}
	if !hostChars(domain) || domain[0] == '.' {
		return "", "", false
	}
	return local, domain, true
}

// hostChars reports whether s holds only letters, digits, '-', '_' and '.'.
func hostChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Resolve implements AddressResolver.
func (r *builtinResolver) Resolve(ctx context.Context, sender, addr string) (Resolved, error) {
	if local, domain, ok := simpleAddr(addr); ok && r.simpleConfig() {
		return r.resolveSimple(ctx, local, domain)
	}
	next, remote, err := r.resolveTokens(ctx, r.rewriteInternal(addr))
	if err != nil {
		return Resolved{}, err
	}
	return r.classify(ctx, next, remote)
}

// simpleConfig reports whether $mydomain is plain enough for the fast path
// (it is appended as tokens by append_dot_mydomain).
func (r *builtinResolver) simpleConfig() bool {
	return !r.cfg.AppendDotMydomain || hostChars(r.cfg.Mydomain)
}

// resolveSimple is Resolve for an address simpleAddr accepts: rewrite may
// append .$mydomain and strips one trailing dot; the local part needs no
// further work whether or not the domain is local.
func (r *builtinResolver) resolveSimple(ctx context.Context, local, domain string) (Resolved, error) {
	if r.cfg.AppendDotMydomain && r.cfg.Mydomain != "" && !strings.Contains(domain, ".") {
		domain += "." + r.cfg.Mydomain
	}
	if n := len(domain); n >= 2 && domain[n-1] == '.' && domain[n-2] != '.' {
		domain = domain[:n-1]
	}
	isLocal, err := r.resolveLocal(ctx, domain)
	if err != nil {
		return Resolved{}, err
	}
	return r.classify(ctx, local+"@"+domain, !isLocal)
}

// rewriteInternal is rewrite_clnt_internal in the local context: quote,
// rewrite, unquote.
func (r *builtinResolver) rewriteInternal(addr string) string {
	if addr == "" {
		return ""
	}
	return internalize822(r.rewriteTree(scan822(address.Quote(addr))))
}

// resolveTokens is the loop of trivial-rewrite's resolve_addr: strip local
// domains (and the routing that was behind them) until a remote domain or
// a bare local part is left. It returns the recipient in internal form and
// whether its domain is remote.
func (r *builtinResolver) resolveTokens(ctx context.Context, addr string) (string, bool, error) {
	toks := scan822(address.Quote(addr))
	var saved []tok // the last local @domain that was stripped
	remote := false
	loopMax := len(addr) + 100
	for loop := 0; ; loop++ {
		if loop > loopMax {
			r.log.Warn(fmt.Sprintf("resolve_addr: <%s>: giving up after %d iterations", addr, loop))
			break
		}
		n := len(toks)
		if n >= 2 && toks[n-1].t == '.' && rfindTok(toks, '@') >= 0 && toks[n-2].t != '.' && toks[n-2].t != '@' {
			toks = toks[:n-1]
		}
		if n := len(toks); r.cfg.ResolveNullDomain && n > 0 && toks[n-1].t == '@' {
			toks = toks[:n-1]
		}
		if at := rfindTok(toks, '@'); at >= 0 {
			if at+1 < len(toks) {
				local, err := r.resolveLocal(ctx, internalize822(toks[at+1:]))
				if err != nil {
					return "", false, err
				}
				if !local {
					remote = true
					break
				}
			}
			saved = append([]tok(nil), toks[at:]...)
			toks = toks[:at:at]
		}
		// With the local domain gone, routing in the local part becomes
		// the address: foo%bar, site!user, user@host.
		if rfindTok(toks, '@') >= 0 || r.cfg.SwapBangpath && rfindTok(toks, '!') >= 0 ||
			r.cfg.AllowPercentHack && rfindTok(toks, '%') >= 0 {
			toks = r.rewriteTree(toks)
			continue
		}
		// resolve_dequoted_address: look for routing inside a quoted local
		// part too, so "user@remote"@local cannot relay.
		if r.cfg.ResolveDequoted && len(toks) == 1 && toks[0].t == tkQString {
			local := toks[0].s
			oper := strings.LastIndexByte(local, '@')
			if oper < 0 && r.cfg.AllowPercentHack {
				oper = strings.LastIndexByte(local, '%')
			}
			if oper < 0 && r.cfg.SwapBangpath {
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
				toks = r.rewriteTree(scan822(local))
				continue
			}
		}
		// An empty local part is the local MAILER-DAEMON.
		if len(toks) == 1 && toks[0].t == tkQString && toks[0].s == "" {
			toks = nil
		}
		if len(toks) == 0 {
			toks = scan822(r.cfg.EmptyAddressRecipient)
		}
		break
	}
	if !remote {
		if saved != nil {
			toks = append(toks, saved...)
		} else {
			toks = append(append(toks, tok{t: '@'}), scan822(r.cfg.Myhostname)...)
		}
	}
	return internalize822(toks), remote, nil
}

// classify finishes resolve_addr for a recipient in internal form: check
// the domain syntax, flag routing, find the address class, transport and
// next hop. smtpd then folds the address to lower case.
func (r *builtinResolver) classify(ctx context.Context, next string, remote bool) (Resolved, error) {
	at := strings.LastIndexByte(next, '@')
	domain := next[at+1:]
	res := Resolved{}
	if strings.HasPrefix(domain, "[") {
		if _, err := address.ParseLiteral(domain); err != nil {
			res.Invalid = true
		}
	} else if !validUTF8Hostname(true, domain) {
		if a, err := netip.ParseAddr(domain); r.cfg.ResolveNumericDomain && err == nil && a.Zone() == "" {
			// resolve_numeric_domain: user@1.2.3.4 means user@[1.2.3.4].
			domain = "[" + domain + "]"
			next = next[:at+1] + domain
			if local, _ := r.resolveLocal(ctx, domain); local {
				remote = false
			}
		} else {
			res.Invalid = true
		}
	}
	res.Address = maps.FoldKey(next)
	if res.Invalid {
		return res, nil
	}
	// Routing operators count even where this machine would not act on
	// them: the next hop may (RESOLVE_FLAG_ROUTED).
	if i := strings.IndexAny(next, "@!%"); next[i+1:] != domain {
		res.Routed = true
	}
	var transport string
	if remote {
		alias, err := matchDomain(ctx, r.alias, domain)
		if err != nil {
			return Resolved{}, fmt.Errorf("virtual_alias_domains lookup failure: %w", err)
		}
		mailbox := false
		if !alias {
			if mailbox, err = matchDomain(ctx, r.mailbox, domain); err != nil {
				return Resolved{}, fmt.Errorf("virtual_mailbox_domains lookup failure: %w", err)
			}
		}
		relay := false
		if !alias && !mailbox {
			if relay, err = matchDomain(ctx, r.relay, domain); err != nil {
				return Resolved{}, fmt.Errorf("relay_domains lookup failure: %w", err)
			}
		}
		switch {
		case alias:
			r.warnBoth(ctx, domain, "virtual_alias_domains", r.mailbox, "virtual_mailbox_domains")
			r.warnBoth(ctx, domain, "virtual_alias_domains", r.relay, "relay_domains")
			// Every address of a virtual alias domain must be aliased
			// away; what is left is unknown (resolve.c).
			res.Class = ClassVirtualAlias
			transport = "error"
			res.Nexthop = "5.1.1 User unknown"
			if r.cfg.ShowUserUnknownTableName {
				res.Nexthop += " in virtual alias table"
			}
		case mailbox:
			r.warnBoth(ctx, domain, "virtual_mailbox_domains", r.relay, "relay_domains")
			res.Class = ClassVirtualMailbox
			transport = r.cfg.VirtualTransport
			res.Nexthop = domain
		default:
			res.Class = ClassDefault
			transport = r.cfg.DefaultTransport
			if relay {
				res.Class = ClassRelay
				transport = r.cfg.RelayTransport
			}
			// Off-host delivery goes to the relayhost when there is one.
			res.Nexthop = domain
			if r.cfg.Relayhost != "" {
				res.Nexthop = r.cfg.Relayhost
			}
		}
	} else {
		r.warnBoth(ctx, domain, "mydestination", r.alias, "virtual_alias_domains")
		r.warnBoth(ctx, domain, "mydestination", r.mailbox, "virtual_mailbox_domains")
		res.Class = ClassLocal
		transport = r.cfg.LocalTransport
		res.Nexthop = domain
	}
	// A transport:nexthop parameter value overrides the next hop.
	if t, nh, ok := strings.Cut(transport, ":"); ok {
		transport = t
		if nh != "" {
			res.Nexthop = nh
		}
	}
	if transport == "" {
		return Resolved{}, fmt.Errorf("%s transport: null transport is not allowed", res.Class)
	}
	res.Transport = transport
	res.Final = res.Class.Final()
	// Addresses that start with '-' could pass for command options.
	if !r.cfg.AllowMinUser && strings.HasPrefix(next, "-") {
		res.Invalid = true
	}
	return res, nil
}

// matchDomain matches a domain against a list that may be absent.
func matchDomain(ctx context.Context, l *maps.MatchList, domain string) (bool, error) {
	if l == nil {
		return false, nil
	}
	return l.Match(ctx, domain)
}

// warnBoth logs Postfix's helpful warning about a domain listed in two
// address classes, whose result is implementation-defined.
func (r *builtinResolver) warnBoth(ctx context.Context, domain, first string, l *maps.MatchList, second string) {
	if l == nil {
		return
	}
	if ok, _ := l.Match(ctx, domain); ok {
		r.log.Warn(fmt.Sprintf("do not list domain %s in BOTH %s and %s", domain, first, second))
	}
}
