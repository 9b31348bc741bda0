package restrictions

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/internal/tok822"
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
// supply the complete one (route.Resolver.SMTPD). Its answers are compared
// with Postfix 3.7's own trivial-rewrite daemon (resolve_oracle_test.go,
// testdata/resolve); the token-level steps are internal/tok822's, shared
// with package route.
type AddressResolver interface {
	Resolve(ctx context.Context, sender, addr string) (Resolved, error)
}

// Resolver returns the address resolver the Checker uses: AddressConfig's
// Resolver, or the built-in one made from the AddressConfig values. The SMTP
// server uses it for smtpd_check_addr's address syntax check.
func (c *Checker) Resolver() AddressResolver { return c.dest.resolver }

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
	strip   tok822.Resolver // rewrite_tree and resolve_addr's loop
}

// newBuiltinResolver makes the resolver for cfg; New sets the domain
// lists and addresses.
func newBuiltinResolver(cfg *AddressConfig, log *slog.Logger) *builtinResolver {
	r := &builtinResolver{cfg: cfg, log: log}
	r.strip = tok822.Resolver{
		Context: tok822.Context{
			Origin: cfg.Myorigin, Domain: cfg.Mydomain,
			AppendAtOrigin: cfg.AppendAtMyorigin, AppendDotDomain: cfg.AppendDotMydomain,
			SwapBangPath: cfg.SwapBangpath, AllowPercentHack: cfg.AllowPercentHack,
		},
		MyHostname:            cfg.Myhostname,
		ResolveDequoted:       cfg.ResolveDequoted,
		ResolveNullDomain:     cfg.ResolveNullDomain,
		EmptyAddressRecipient: cfg.EmptyAddressRecipient,
		IsLocal:               r.resolveLocal,
		Warn:                  func(msg string) { r.log.Warn(msg) },
	}
	return r
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
	next, remote, err := r.strip.Strip(ctx, r.rewriteInternal(addr))
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
	return tok822.Internalize(r.strip.Rewrite(tok822.Scan(address.Quote(addr))))
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
