package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/internal/tok822"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/queue"
)

// Class is the address class of a recipient's domain (ADDRESS_CLASS_README).
type Class int

// The address classes. trivial-rewrite tests local first, then the others
// in this order.
const (
	// Local: the domain matches $mydestination or is an address literal
	// of $inet_interfaces or $proxy_interfaces.
	Local Class = iota + 1
	// VirtualAlias: $virtual_alias_domains. A recipient that is still in
	// such a domain at routing time had no virtual alias: it is unknown.
	VirtualAlias
	// VirtualMailbox: $virtual_mailbox_domains.
	VirtualMailbox
	// Relay: $relay_domains.
	Relay
	// Default: every other domain.
	Default
)

var classNames = [...]string{"", "local", "virtual alias", "virtual mailbox", "relay", "default"}

// String names the class as Postfix's documentation does.
func (c Class) String() string {
	if c > 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Result is what the resolver says about one recipient: trivial-rewrite's
// (transport, nexthop, recipient) triple and flags.
type Result struct {
	// Class is the address class of the recipient's domain.
	Class Class
	// Transport and Nexthop are the delivery service and its destination
	// after transport_maps and relocated_maps: ("smtp", "example.com"),
	// ("local", "mx.example.com"), ("error", "5.1.1 User unknown in
	// virtual alias table"), ("lmtp", "unix:/run/dovecot/lmtp").
	Transport, Nexthop string
	// Recipient is the address delivery uses, in internal form: the
	// input in canonical form with local routing removed
	// ("joe%remote.example@local.example" is "joe@remote.example").
	Recipient string
	// Routed: the recipient's local part still has a routing operator
	// ('@', '!', '%'), as in "user%host@relay.example" (RESOLVE_FLAG_ROUTED).
	Routed bool
	// Invalid: the domain is not a valid host name or address literal, or
	// the recipient starts with '-' and allow_min_user = no
	// (RESOLVE_FLAG_ERROR). Postfix's queue manager bounces such a
	// recipient with "5.1.3 bad address syntax"; Transport and Nexthop
	// are then not meaningful.
	Invalid bool
}

// Route returns the queue's view of the result.
func (r Result) Route() queue.Route { return queue.Route{Transport: r.Transport, Nexthop: r.Nexthop} }

// Config is the typed configuration of a Resolver. Booleans that default
// to "yes" in Postfix are false in the zero value; Defaults gives
// Postfix's settings.
type Config struct {
	// MyHostname ($myhostname) completes recipients with no domain left
	// after local routing is removed, and the null recipient.
	MyHostname string
	// MyOrigin and MyDomain are the local rewriting context (spec §6.1).
	MyOrigin, MyDomain string
	// append_at_myorigin, append_dot_mydomain, swap_bangpath,
	// allow_percent_hack.
	AppendAtMyOrigin, AppendDotMyDomain, SwapBangPath, AllowPercentHack bool
	// resolve_dequoted_address, resolve_null_domain,
	// resolve_numeric_domain, allow_min_user.
	ResolveDequoted, ResolveNullDomain, ResolveNumericDomain, AllowMinUser bool
	// SMTPUTF8 is smtputf8_enable: UTF-8 domain names are valid.
	SMTPUTF8 bool
	// EmptyAddressRecipient is empty_address_recipient ("" = MAILER-DAEMON).
	EmptyAddressRecipient string

	// MyDestination is $mydestination (a string list: names and table
	// keys, no subdomains). Nil matches nothing.
	MyDestination *maps.MatchList
	// OwnAddrs are the addresses of $inet_interfaces and
	// $proxy_interfaces: [literal] domains of these are local.
	OwnAddrs []netip.Addr
	// VirtualAliasDomains and VirtualMailboxDomains are string lists,
	// RelayDomains a domain list (subdomains per
	// parent_domain_matches_subdomains). Nil matches nothing.
	VirtualAliasDomains, VirtualMailboxDomains, RelayDomains *maps.MatchList

	// local_transport, virtual_transport, relay_transport,
	// default_transport: "transport" or "transport:nexthop".
	LocalTransport, VirtualTransport, RelayTransport, DefaultTransport string
	// Relayhost is $relayhost ("[smtp.example.com]:587"), for the relay
	// and default classes.
	Relayhost string
	// SenderDependentRelayhostMaps and SenderDependentDefaultTransportMaps
	// are searched with the envelope sender (user+ext@domain,
	// user@domain, [user+ext, user if the domain is local], @domain); a
	// result of DUNNO ends the search without an override. The null
	// sender is looked up as NullRelayhostKey or NullDefaultTransportKey.
	SenderDependentRelayhostMaps, SenderDependentDefaultTransportMaps maps.List
	// empty_address_relayhost_maps_lookup_key and
	// empty_address_default_transport_maps_lookup_key ("<>").
	NullRelayhostKey, NullDefaultTransportKey string
	// TransportMaps is transport_maps, searched with
	// TransportParentStyle (transport_maps in
	// parent_domain_matches_subdomains; off by default: .domain keys).
	TransportMaps        maps.List
	TransportParentStyle bool
	// RelocatedMaps is relocated_maps: a match routes the recipient to
	// error:5.1.6 User has moved to NEW.
	RelocatedMaps maps.List
	// ShowUserUnknownTableName is show_user_unknown_table_name.
	ShowUserUnknownTableName bool
	// RecipientDelimiter and Split decide the user+ext keys.
	RecipientDelimiter string
	Split              address.SplitOptions

	// Logger receives Postfix's warnings (a domain in two classes, a
	// table lookup failure). Nil means slog.Default().
	Logger *slog.Logger
}

// Defaults returns Postfix 3.7's settings for a host: transports
// local:$myhostname, virtual, relay and smtp, and the default booleans.
// MyDestination is left nil (Postfix's default is $myhostname,
// localhost.$mydomain, localhost; FromConfig builds it).
func Defaults(myHostname, myDomain string) Config {
	return Config{
		MyHostname: myHostname, MyOrigin: myHostname, MyDomain: myDomain,
		AppendAtMyOrigin: true, SwapBangPath: true, AllowPercentHack: true,
		ResolveDequoted: true, SMTPUTF8: true,
		EmptyAddressRecipient: "MAILER-DAEMON",
		LocalTransport:        "local:" + myHostname,
		VirtualTransport:      "virtual",
		RelayTransport:        "relay",
		DefaultTransport:      "smtp",
		NullRelayhostKey:      "<>", NullDefaultTransportKey: "<>",
		ShowUserUnknownTableName: true,
	}
}

// Resolver is trivial-rewrite's resolve service plus transport_maps. It is
// safe for concurrent use and implements queue.Router.
type Resolver struct {
	cfg       Config
	log       *slog.Logger
	own       map[netip.Addr]bool
	transport maps.AddressStrategy
	sender    maps.AddressStrategy
	strip     tok822.Resolver // rewriting and local-domain stripping
	closers   []func() error
}

// New checks cfg and returns a Resolver.
func New(cfg Config) (*Resolver, error) {
	if cfg.MyHostname == "" {
		return nil, errors.New("route: MyHostname is empty")
	}
	for _, t := range []struct{ name, v string }{
		{"local_transport", cfg.LocalTransport}, {"virtual_transport", cfg.VirtualTransport},
		{"relay_transport", cfg.RelayTransport}, {"default_transport", cfg.DefaultTransport},
	} {
		if _, _, err := ParseTransport(t.v); err != nil {
			return nil, fmt.Errorf("route: %s: %w", t.name, err)
		}
	}
	if cfg.EmptyAddressRecipient == "" {
		cfg.EmptyAddressRecipient = "MAILER-DAEMON"
	}
	r := &Resolver{cfg: cfg, log: cfg.Logger, own: map[netip.Addr]bool{}}
	if r.log == nil {
		r.log = slog.Default()
	}
	for _, a := range cfg.OwnAddrs {
		r.own[a.Unmap()] = true
	}
	r.transport = maps.TransportStrategy(cfg.RecipientDelimiter, cfg.TransportParentStyle)
	r.transport.Split = cfg.Split
	r.sender = maps.MappingStrategy(cfg.RecipientDelimiter, r.isLocalOrOrigin)
	r.sender.Split = cfg.Split
	r.strip = tok822.Resolver{
		Context: tok822.Context{
			Origin: cfg.MyOrigin, Domain: cfg.MyDomain,
			AppendAtOrigin: cfg.AppendAtMyOrigin, AppendDotDomain: cfg.AppendDotMyDomain,
			SwapBangPath: cfg.SwapBangPath, AllowPercentHack: cfg.AllowPercentHack,
		},
		MyHostname:            cfg.MyHostname,
		ResolveDequoted:       cfg.ResolveDequoted,
		ResolveNullDomain:     cfg.ResolveNullDomain,
		EmptyAddressRecipient: cfg.EmptyAddressRecipient,
		IsLocal:               r.isLocal,
		Warn:                  func(msg string) { r.log.Warn(msg) },
	}
	return r, nil
}

// Config returns the configuration the Resolver uses.
func (r *Resolver) Config() Config { return r.cfg }

// Close closes the tables FromConfig opened. A Resolver made with New owns
// nothing and Close does nothing.
func (r *Resolver) Close() error {
	var errs []error
	for _, c := range r.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// lookupError is a table that failed: trivial-rewrite answers with
// RESOLVE_FLAG_FAIL and the queue manager defers the recipient.
type lookupError struct {
	what string
	err  error
}

func (e *lookupError) Error() string { return "route: " + e.what + " lookup failure: " + e.err.Error() }
func (e *lookupError) Unwrap() error { return e.err }

// IsLookupFailure reports whether err from Resolve is a table or domain
// list that could not be searched (Postfix defers such a recipient with
// "4.3.0 address resolver failure").
func IsLookupFailure(err error) bool {
	var le *lookupError
	return errors.As(err, &le)
}

// Route implements queue.Router: the recipient's transport and next hop.
// A table failure is a temporary *queue.RouteError (4.3.0); an address
// that does not resolve to a valid domain a permanent one (5.1.3 bad
// address syntax); a recipient in a virtual alias domain (which virtual
// alias expansion did not map away) a permanent 5.1.1 "User unknown in
// virtual alias table", as Postfix's error transport reports it.
func (r *Resolver) Route(ctx context.Context, env *cleanup.Envelope, rcpt string) (queue.Route, error) {
	sender := ""
	if env != nil {
		sender = env.Sender
	}
	res, err := r.Resolve(ctx, sender, rcpt)
	if err != nil {
		if ctx.Err() != nil {
			return queue.Route{}, err
		}
		return queue.Route{}, &queue.RouteError{DSN: "4.3.0", Reason: "address resolver failure"}
	}
	if res.Invalid {
		return queue.Route{}, &queue.RouteError{Permanent: true, DSN: "5.1.3", Reason: "bad address syntax"}
	}
	if res.Class == VirtualAlias && res.Transport == "error" {
		dsn, text := splitDSN(res.Nexthop, "5.1.1")
		return queue.Route{}, &queue.RouteError{Permanent: true, DSN: dsn, Reason: text}
	}
	return res.Route(), nil
}

// splitDSN separates an error text "5.1.1 User unknown" into its
// enhanced status code and text (error(8)); def is the code when the
// text has none.
func splitDSN(s, def string) (string, string) {
	code, rest, ok := strings.Cut(s, " ")
	if ok && len(code) >= 5 && (code[0] == '4' || code[0] == '5') && code[1] == '.' {
		valid := true
		for _, c := range code[2:] {
			if !(c == '.' || c >= '0' && c <= '9') {
				valid = false
			}
		}
		if valid {
			return code, rest
		}
	}
	return def, s
}

// Resolve finds the address class, transport, next hop and final
// recipient of rcpt for mail from sender ("" is the null sender), as
// Postfix's trivial-rewrite does when the queue manager asks it
// (resolve.c, transport.c; spec §6.5). rcpt is in internal form and
// normally already in canonical form (cleanup did that, see package
// rewrite); the resolver itself does what is left:
//
//  1. a trailing dot is removed, and with resolve_null_domain a trailing
//     '@'; while the domain is local (mydestination, or the [literal] of an
//     inet_interfaces or proxy_interfaces address) it is removed and the
//     routing left in the local part is followed, in canonical form:
//     user@remote, user%remote (allow_percent_hack), remote!user
//     (swap_bangpath), source routes, and the same inside a quoted local
//     part with resolve_dequoted_address;
//  2. an empty local part becomes $empty_address_recipient; a recipient
//     left without a domain gets back the last local domain removed, or
//     else @$myhostname (local only if mydestination lists it);
//  3. the domain must be a host name or address literal (user@1.2.3.4 is
//     user@[1.2.3.4] with resolve_numeric_domain), else Result.Invalid;
//  4. the class gives the transport and next hop (relayhost and the
//     sender-dependent tables for relay and default); a transport:nexthop
//     parameter value overrides the next hop; transport_maps overrides
//     both, except in the virtual alias class; relocated_maps comes last.
//
// An error is a table that could not be searched (see IsLookupFailure) or
// ctx ending.
func (r *Resolver) Resolve(ctx context.Context, sender, rcpt string) (Result, error) {
	next, remote, err := r.strip.Strip(ctx, rcpt)
	if err != nil {
		return Result{}, err
	}
	return r.classify(ctx, sender, next, remote)
}

// isLocal is resolve_local(3): the domain matches $mydestination or is a
// literal of one of this machine's addresses. One trailing dot is
// ignored.
func (r *Resolver) isLocal(ctx context.Context, domain string) (bool, error) {
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" || strings.HasSuffix(domain, ".") {
		return false, nil
	}
	if r.cfg.MyDestination != nil {
		ok, err := r.cfg.MyDestination.Match(ctx, domain)
		if err != nil {
			return false, &lookupError{"mydestination", err}
		}
		if ok {
			return true, nil
		}
	}
	if len(domain) > 2 && domain[0] == '[' && domain[len(domain)-1] == ']' && len(r.own) > 0 {
		if a, err := address.ParseLiteral(domain); err == nil && r.own[a.Unmap()] {
			return true, nil
		}
	}
	return false, nil
}

// isLocalOrOrigin is the "domain is local" test of the table search
// (mail_addr_find): $myorigin, or resolve_local.
func (r *Resolver) isLocalOrOrigin(ctx context.Context, domain string) (bool, error) {
	if strings.EqualFold(domain, r.cfg.MyOrigin) {
		return true, nil
	}
	return r.isLocal(ctx, domain)
}

// validDomain is valid_utf8_hostname: a host name (UTF-8 allowed with
// smtputf8_enable), not an address.
func (r *Resolver) validDomain(d string) bool {
	if r.cfg.SMTPUTF8 {
		return address.ValidDomain(d) == nil && !address.IsLiteral(d)
	}
	return address.ValidHostname(d) == nil
}

// classify finishes resolve_addr: domain syntax, the routed flag, the
// class, its transport and next hop, transport_maps, relocated_maps.
func (r *Resolver) classify(ctx context.Context, sender, next string, remote bool) (Result, error) {
	at := strings.LastIndexByte(next, '@')
	domain := next[at+1:]
	res := Result{Class: Default}
	if strings.HasPrefix(domain, "[") {
		if _, err := address.ParseLiteral(domain); err != nil {
			res.Invalid = true
		}
	} else if !r.validDomain(domain) {
		if a, err := netip.ParseAddr(domain); r.cfg.ResolveNumericDomain && err == nil && a.Zone() == "" {
			domain = "[" + domain + "]"
			next = next[:at+1] + domain
			local, err := r.isLocal(ctx, domain)
			if err != nil {
				return Result{}, err
			}
			if local {
				remote = false
			}
		} else {
			res.Invalid = true
		}
	}
	res.Recipient = next
	if res.Invalid {
		return res, nil
	}
	// Routing operators count even where this machine does not act on
	// them: the next hop may.
	if i := strings.IndexAny(next, "@!%"); next[i+1:] != domain {
		res.Routed = true
	}
	var transport, blame string
	if remote {
		alias, err := r.match(ctx, r.cfg.VirtualAliasDomains, "virtual_alias_domains", domain)
		if err != nil {
			return Result{}, err
		}
		mailbox := false
		if !alias {
			if mailbox, err = r.match(ctx, r.cfg.VirtualMailboxDomains, "virtual_mailbox_domains", domain); err != nil {
				return Result{}, err
			}
		}
		switch {
		case alias:
			r.warnBoth(ctx, domain, "virtual_alias_domains", r.cfg.VirtualMailboxDomains, "virtual_mailbox_domains")
			r.warnBoth(ctx, domain, "virtual_alias_domains", r.cfg.RelayDomains, "relay_domains")
			res.Class = VirtualAlias
			transport = "error"
			res.Nexthop = "5.1.1 User unknown"
			if r.cfg.ShowUserUnknownTableName {
				res.Nexthop += " in virtual alias table"
			}
		case mailbox:
			r.warnBoth(ctx, domain, "virtual_mailbox_domains", r.cfg.RelayDomains, "relay_domains")
			res.Class = VirtualMailbox
			transport, blame = r.cfg.VirtualTransport, "virtual_transport"
			res.Nexthop = domain
		default:
			relay, err := r.match(ctx, r.cfg.RelayDomains, "relay_domains", domain)
			if err != nil {
				return Result{}, err
			}
			if relay {
				res.Class = Relay
				transport, blame = r.cfg.RelayTransport, "relay_transport"
			} else {
				transport, blame = r.cfg.DefaultTransport, "default_transport"
				if v, ok, err := r.senderLookup(ctx, r.cfg.SenderDependentDefaultTransportMaps,
					"sender_dependent_default_transport_maps", sender, r.cfg.NullDefaultTransportKey); err != nil {
					return Result{}, err
				} else if ok {
					transport, blame = v, "sender_dependent_default_transport_maps"
				}
			}
			// Off-host delivery: the sender-dependent relayhost, else
			// $relayhost, else the recipient domain.
			res.Nexthop = domain
			if v, ok, err := r.senderLookup(ctx, r.cfg.SenderDependentRelayhostMaps,
				"sender_dependent_relayhost_maps", sender, r.cfg.NullRelayhostKey); err != nil {
				return Result{}, err
			} else if ok {
				res.Nexthop = v
			} else if r.cfg.Relayhost != "" {
				res.Nexthop = r.cfg.Relayhost
			}
		}
	} else {
		r.warnBoth(ctx, domain, "mydestination", r.cfg.VirtualAliasDomains, "virtual_alias_domains")
		r.warnBoth(ctx, domain, "mydestination", r.cfg.VirtualMailboxDomains, "virtual_mailbox_domains")
		res.Class = Local
		transport, blame = r.cfg.LocalTransport, "local_transport"
		res.Nexthop = domain
	}
	// A transport:nexthop setting overrides the next hop.
	t, nh, err := ParseTransport(transport)
	if err != nil {
		return Result{}, &lookupError{blame, err}
	}
	if nh != "" {
		res.Nexthop = nh
	}
	if t == "" {
		r.log.Warn(fmt.Sprintf("parameter %s: null transport is not allowed", blame))
		return Result{}, &lookupError{blame, errors.New("null transport is not allowed")}
	}
	res.Transport = t
	// transport_maps can change transport and next hop, except for the
	// virtual alias class's "User unknown".
	if len(r.cfg.TransportMaps) > 0 && res.Class != VirtualAlias {
		found, ok, err := r.cfg.TransportMaps.FindAddress(ctx, next, r.transport)
		if err != nil {
			r.log.Warn("transport_maps lookup failure", "error", err)
			return Result{}, &lookupError{"transport_maps", err}
		}
		if ok {
			nt, nnh, err := ParseTransport(found.Value)
			if err != nil {
				return Result{}, &lookupError{"transport_maps", err}
			}
			r.applyTransport(&res, nt, nnh, domain)
		}
	}
	if len(r.cfg.RelocatedMaps) > 0 {
		found, ok, err := r.cfg.RelocatedMaps.FindAddress(ctx, next, r.sender)
		if err != nil {
			r.log.Warn("relocated_maps lookup failure", "error", err)
			return Result{}, &lookupError{"relocated_maps", err}
		}
		if ok {
			res.Transport = "error"
			res.Nexthop = "5.1.6 User has moved to " + found.Value
		}
	}
	if !r.cfg.AllowMinUser && strings.HasPrefix(next, "-") {
		res.Invalid = true
	}
	return res, nil
}

// applyTransport merges a transport_maps result (transport(5)): an empty
// transport keeps the class's transport, and its next hop unless one is
// given; a transport without a next hop resets the next hop to the
// recipient domain (error and retry get a generic text).
func (r *Resolver) applyTransport(res *Result, t, nh, domain string) {
	if t == "" {
		if nh != "" {
			res.Nexthop = nh
		}
		return
	}
	res.Transport = t
	switch {
	case nh != "":
		res.Nexthop = nh
	case t == "error" || t == "retry":
		res.Nexthop = "Address is undeliverable"
	default:
		res.Nexthop = domain
	}
}

// senderLookup searches a sender-dependent table. DUNNO ends the search
// with no result.
func (r *Resolver) senderLookup(ctx context.Context, l maps.List, name, sender, nullKey string) (string, bool, error) {
	if len(l) == 0 {
		return "", false, nil
	}
	var found maps.Result
	var ok bool
	var err error
	if sender == "" {
		found, ok, err = l.Find(ctx, nullKey)
	} else {
		found, ok, err = l.FindAddress(ctx, sender, r.sender)
	}
	if err != nil {
		r.log.Warn(name+" lookup failure", "error", err)
		return "", false, &lookupError{name, err}
	}
	if !ok || strings.EqualFold(found.Value, "DUNNO") {
		return "", false, nil
	}
	return found.Value, true, nil
}

func (r *Resolver) match(ctx context.Context, l *maps.MatchList, name, domain string) (bool, error) {
	if l == nil {
		return false, nil
	}
	ok, err := l.Match(ctx, domain)
	if err != nil {
		r.log.Warn(name+" lookup failure", "error", err)
		return false, &lookupError{name, err}
	}
	return ok, nil
}

// warnBoth logs Postfix's warning about a domain listed in two classes.
func (r *Resolver) warnBoth(ctx context.Context, domain, first string, l *maps.MatchList, second string) {
	if l == nil {
		return
	}
	if ok, _ := l.Match(ctx, domain); ok {
		r.log.Warn(fmt.Sprintf("do not list domain %s in BOTH %s and %s", domain, first, second))
	}
}
