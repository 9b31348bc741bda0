package restrictions

import (
	"context"
	"fmt"
	"hash/maphash"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
)

// AddressConfig configures address resolution and the restrictions that
// depend on it: permit_auth_destination, reject_unauth_destination,
// defer_unauth_destination, check_relay_domains, reject_unlisted_sender,
// reject_unlisted_recipient (and the implicit smtpd_reject_unlisted_*
// checks), the sender login mismatch checks and reject_unverified_*.
// DefaultConfig fills it with `postconf -d` values at compatibility_level
// 3.6; a field left at its zero value means that zero value, except for
// the reply codes and tempfail actions, which fall back to their defaults.
type AddressConfig struct {
	// Resolver resolves addresses; nil uses the built-in resolver made from
	// the fields below.
	Resolver AddressResolver
	// Verifier answers reject_unverified_sender and
	// reject_unverified_recipient. Nil behaves as Postfix does when its
	// verify(8) service cannot be reached: a warning and "450 4.1.1
	// <addr>: Recipient address rejected: address verification problem"
	// through the tempfail action.
	Verifier Verifier

	RecipientDelimiter  string // recipient_delimiter
	OwnerRequestSpecial bool   // owner_request_special
	DoubleBounceSender  string // double_bounce_sender

	Myorigin   string // myorigin: appended to addresses without a domain
	Mydomain   string // mydomain
	Myhostname string // myhostname

	AppendAtMyorigin      bool   // append_at_myorigin
	AppendDotMydomain     bool   // append_dot_mydomain
	SwapBangpath          bool   // swap_bangpath
	AllowPercentHack      bool   // allow_percent_hack
	ResolveDequoted       bool   // resolve_dequoted_address
	ResolveNullDomain     bool   // resolve_null_domain
	ResolveNumericDomain  bool   // resolve_numeric_domain
	AllowMinUser          bool   // allow_min_user
	EmptyAddressRecipient string // empty_address_recipient

	// Mydestination is $mydestination: names (compared whole, ignoring
	// case), /file/name and type:table patterns.
	Mydestination []string
	// InetInterfaces and ProxyInterfaces are the addresses of
	// $inet_interfaces and $proxy_interfaces; an address literal of one of
	// them is a local domain. Config.OwnAddrs count too.
	InetInterfaces  []netip.Addr
	ProxyInterfaces []netip.Addr
	// VirtualAliasDomains and VirtualMailboxDomains are matched like
	// Mydestination (Postfix's string lists: no subdomain matching).
	VirtualAliasDomains   []string
	VirtualMailboxDomains []string
	// RelayDomains is $relay_domains, a domain list: with
	// RelayDomainsParentStyle (relay_domains is in
	// parent_domain_matches_subdomains, the default) example.com also
	// matches its subdomains.
	RelayDomains            []string
	RelayDomainsParentStyle bool

	LocalTransport   string // local_transport
	VirtualTransport string // virtual_transport
	RelayTransport   string // relay_transport
	DefaultTransport string // default_transport
	Relayhost        string // relayhost

	// Table specs, each list searched like Postfix's maps (first match
	// wins).
	LocalRecipientMaps []string // local_recipient_maps
	// AliasMaps is alias_maps: a LocalRecipientMaps table also listed
	// here is read as an aliases(5) file, the way postalias builds it
	// (local_recipient_maps defaults to proxy:unix:passwd.byname $alias_maps).
	AliasMaps              []string
	VirtualAliasMaps       []string // virtual_alias_maps
	VirtualMailboxMaps     []string // virtual_mailbox_maps
	RelayRecipientMaps     []string // relay_recipient_maps
	CanonicalMaps          []string // canonical_maps
	SenderCanonicalMaps    []string // sender_canonical_maps
	RecipientCanonicalMaps []string // recipient_canonical_maps
	SenderLoginMaps        []string // smtpd_sender_login_maps

	UnknownLocalRecipientRejectCode int  // unknown_local_recipient_reject_code (550)
	UnknownVirtualAliasRejectCode   int  // unknown_virtual_alias_reject_code (550)
	UnknownVirtualMailboxRejectCode int  // unknown_virtual_mailbox_reject_code (550)
	UnknownRelayRecipientRejectCode int  // unknown_relay_recipient_reject_code (550)
	RelayDomainsRejectCode          int  // relay_domains_reject_code (554)
	ShowUserUnknownTableName        bool // show_user_unknown_table_name
	// NoUnknownRecipientChecks is receive_override_options =
	// no_unknown_recipient_checks: reject_unlisted_* do nothing.
	NoUnknownRecipientChecks bool

	UnverifiedSenderRejectCode        int    // unverified_sender_reject_code (450)
	UnverifiedSenderDeferCode         int    // unverified_sender_defer_code (450)
	UnverifiedSenderRejectReason      string // unverified_sender_reject_reason
	UnverifiedSenderTempfailAction    string // unverified_sender_tempfail_action: defer_if_permit or defer
	UnverifiedRecipientRejectCode     int    // unverified_recipient_reject_code (450)
	UnverifiedRecipientDeferCode      int    // unverified_recipient_defer_code (450)
	UnverifiedRecipientRejectReason   string // unverified_recipient_reject_reason
	UnverifiedRecipientTempfailAction string // unverified_recipient_tempfail_action
	// VerifyPollCount and VerifyPollDelay are address_verify_poll_count
	// (3) and address_verify_poll_delay (3s): how often, and how far apart,
	// a pending verification is asked again before answering 450.
	VerifyPollCount int
	VerifyPollDelay time.Duration
}

// VerifyStatus is what address verification knows about an address
// (verify(8)'s recipient status).
type VerifyStatus int

// The verification results.
const (
	// VerifyPending: a probe is under way, no result yet.
	VerifyPending VerifyStatus = iota
	// VerifyDeferred: the probe's delivery was deferred.
	VerifyDeferred
	// VerifyDeliverable: the probe would have been delivered.
	VerifyDeliverable
	// VerifyUndeliverable: the probe bounced.
	VerifyUndeliverable
)

// Verifier is an address verification service (Postfix's verify(8)). It
// returns what is known about addr and the reason text of the last probe
// ("host mx.example[192.0.2.1] said: 550 5.1.1 unknown user"). An error
// means the service failed; smtpd then answers "address verification
// problem" with a 450.
type Verifier interface {
	Verify(ctx context.Context, addr string) (status VerifyStatus, reason string, err error)
}

// VerifierFunc adapts a function to the Verifier interface.
type VerifierFunc func(ctx context.Context, addr string) (VerifyStatus, string, error)

// Verify implements Verifier.
func (f VerifierFunc) Verify(ctx context.Context, addr string) (VerifyStatus, string, error) {
	return f(ctx, addr)
}

var defaultAddresses = sync.OnceValue(func() AddressConfig {
	c := config.Default()
	c.Set("compatibility_level", "3.6")
	return addressConfigFrom(config.NewReader(c))
})

// defaultAddressConfig returns `postconf -d` at compatibility_level 3.6
// (host-dependent values from this machine).
func defaultAddressConfig() AddressConfig {
	a := defaultAddresses()
	a.clone()
	return a
}

// clone gives the slices their own backing arrays.
func (a *AddressConfig) clone() {
	for _, p := range []*[]string{&a.Mydestination, &a.VirtualAliasDomains, &a.VirtualMailboxDomains,
		&a.RelayDomains, &a.LocalRecipientMaps, &a.AliasMaps, &a.VirtualAliasMaps, &a.VirtualMailboxMaps,
		&a.RelayRecipientMaps, &a.CanonicalMaps, &a.SenderCanonicalMaps, &a.RecipientCanonicalMaps,
		&a.SenderLoginMaps} {
		*p = slices.Clone(*p)
	}
	a.InetInterfaces = slices.Clone(a.InetInterfaces)
	a.ProxyInterfaces = slices.Clone(a.ProxyInterfaces)
}

func addressConfigFrom(p *params) AddressConfig {
	a := AddressConfig{
		RecipientDelimiter:    p.Str("recipient_delimiter"),
		OwnerRequestSpecial:   p.Bool("owner_request_special"),
		DoubleBounceSender:    p.Str("double_bounce_sender"),
		Myorigin:              p.Str("myorigin"),
		Mydomain:              p.Str("mydomain"),
		Myhostname:            p.Str("myhostname"),
		AppendAtMyorigin:      p.Bool("append_at_myorigin"),
		AppendDotMydomain:     p.Bool("append_dot_mydomain"),
		SwapBangpath:          p.Bool("swap_bangpath"),
		AllowPercentHack:      p.Bool("allow_percent_hack"),
		ResolveDequoted:       p.Bool("resolve_dequoted_address"),
		ResolveNullDomain:     p.Bool("resolve_null_domain"),
		ResolveNumericDomain:  p.Bool("resolve_numeric_domain"),
		AllowMinUser:          p.Bool("allow_min_user"),
		EmptyAddressRecipient: p.Str("empty_address_recipient"),

		Mydestination:           p.List("mydestination"),
		InetInterfaces:          interfaceAddrs(p.Str("inet_interfaces")),
		ProxyInterfaces:         interfaceAddrs(p.Str("proxy_interfaces")),
		VirtualAliasDomains:     p.List("virtual_alias_domains"),
		VirtualMailboxDomains:   p.List("virtual_mailbox_domains"),
		RelayDomains:            p.List("relay_domains"),
		RelayDomainsParentStyle: p.ParentStyle("relay_domains"),

		LocalTransport:   p.Str("local_transport"),
		VirtualTransport: p.Str("virtual_transport"),
		RelayTransport:   p.Str("relay_transport"),
		DefaultTransport: p.Str("default_transport"),
		Relayhost:        p.Str("relayhost"),

		LocalRecipientMaps:     p.List("local_recipient_maps"),
		AliasMaps:              p.List("alias_maps"),
		VirtualAliasMaps:       p.List("virtual_alias_maps"),
		VirtualMailboxMaps:     p.List("virtual_mailbox_maps"),
		RelayRecipientMaps:     p.List("relay_recipient_maps"),
		CanonicalMaps:          p.List("canonical_maps"),
		SenderCanonicalMaps:    p.List("sender_canonical_maps"),
		RecipientCanonicalMaps: p.List("recipient_canonical_maps"),
		SenderLoginMaps:        p.List("smtpd_sender_login_maps"),

		UnknownLocalRecipientRejectCode: p.Int("unknown_local_recipient_reject_code"),
		UnknownVirtualAliasRejectCode:   p.Int("unknown_virtual_alias_reject_code"),
		UnknownVirtualMailboxRejectCode: p.Int("unknown_virtual_mailbox_reject_code"),
		UnknownRelayRecipientRejectCode: p.Int("unknown_relay_recipient_reject_code"),
		RelayDomainsRejectCode:          p.Int("relay_domains_reject_code"),
		ShowUserUnknownTableName:        p.Bool("show_user_unknown_table_name"),

		UnverifiedSenderRejectCode:        p.Int("unverified_sender_reject_code"),
		UnverifiedSenderDeferCode:         p.Int("unverified_sender_defer_code"),
		UnverifiedSenderRejectReason:      p.Str("unverified_sender_reject_reason"),
		UnverifiedSenderTempfailAction:    p.Str("unverified_sender_tempfail_action"),
		UnverifiedRecipientRejectCode:     p.Int("unverified_recipient_reject_code"),
		UnverifiedRecipientDeferCode:      p.Int("unverified_recipient_defer_code"),
		UnverifiedRecipientRejectReason:   p.Str("unverified_recipient_reject_reason"),
		UnverifiedRecipientTempfailAction: p.Str("unverified_recipient_tempfail_action"),
		VerifyPollCount:                   p.Int("address_verify_poll_count"),
		VerifyPollDelay:                   p.Duration("address_verify_poll_delay"),
	}
	for _, o := range p.List("receive_override_options") {
		if o == "no_unknown_recipient_checks" {
			a.NoUnknownRecipientChecks = true
		}
	}
	// Debian's Postfix reads myorigin from a file when the value is a
	// path (/etc/mailname in Debian's main.cf).
	if strings.HasPrefix(a.Myorigin, "/") {
		data, err := os.ReadFile(a.Myorigin)
		if err != nil {
			p.Keep(&ConfigError{Param: "myorigin", Err: fmt.Errorf("read %s: %w", a.Myorigin, err)})
		} else {
			line, _, _ := strings.Cut(string(data), "\n")
			a.Myorigin = strings.TrimSpace(line)
		}
	}
	return a
}

// interfaceAddrs resolves an inet_interfaces-style value to addresses:
// "all" is every address of this machine, "loopback-only" its loopback
// addresses, other items are addresses or host names.
func interfaceAddrs(v string) []netip.Addr {
	var out []netip.Addr
	for _, it := range config.SplitList(strings.ToLower(v)) {
		switch it {
		case "all", "loopback-only":
			for _, p := range config.SystemHost().Interfaces {
				if it == "all" || p.Addr().IsLoopback() {
					out = append(out, p.Addr())
				}
			}
			continue
		}
		if a, err := netip.ParseAddr(strings.Trim(it, "[]")); err == nil {
			out = append(out, a.Unmap())
			continue
		}
		hosts, _ := net.LookupHost(it)
		for _, h := range hosts {
			if a, err := netip.ParseAddr(h); err == nil {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// destState holds what the address restrictions need, built once in New.
type destState struct {
	c        *Checker
	cfg      *AddressConfig
	resolver AddressResolver
	builtin  *builtinResolver // for resolve_local, whatever resolver is used

	mapping maps.AddressStrategy // mail_addr_find's default strategy

	localRcpt, virtAlias, virtMailbox, relayRcpt maps.List
	canonical, senderCanon, rcptCanon, loginMaps maps.List

	checkRelayOnce sync.Once
	cache          resolveCache
}

func newDestState(ctx context.Context, c *Checker) (*destState, error) {
	a := &c.cfg.Addresses
	d := &destState{c: c, cfg: a}
	d.cache.seed = maphash.MakeSeed()
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	def(&a.UnknownLocalRecipientRejectCode, 550)
	def(&a.UnknownVirtualAliasRejectCode, 550)
	def(&a.UnknownVirtualMailboxRejectCode, 550)
	def(&a.UnknownRelayRecipientRejectCode, 550)
	def(&a.RelayDomainsRejectCode, 554)
	def(&a.UnverifiedSenderRejectCode, 450)
	def(&a.UnverifiedSenderDeferCode, 450)
	def(&a.UnverifiedRecipientRejectCode, 450)
	def(&a.UnverifiedRecipientDeferCode, 450)
	for _, t := range []struct {
		param string
		v     *string
	}{
		{"unverified_sender_tempfail_action", &a.UnverifiedSenderTempfailAction},
		{"unverified_recipient_tempfail_action", &a.UnverifiedRecipientTempfailAction},
	} {
		switch *t.v {
		case "":
			*t.v = "defer_if_permit"
		case "defer_if_permit", "defer":
		default:
			return nil, &ConfigError{Param: t.param, Err: fmt.Errorf("bad configuration: %s = %s", t.param, *t.v)}
		}
	}
	if a.EmptyAddressRecipient == "" {
		a.EmptyAddressRecipient = "MAILER-DAEMON"
	}

	reg := d.registry()
	r := newBuiltinResolver(a, c.log)
	r.own = append(append(append(r.own, a.InetInterfaces...), a.ProxyInterfaces...), c.cfg.OwnAddrs...)
	for i := range r.own {
		r.own[i] = r.own[i].Unmap()
	}
	var err error
	lists := []struct {
		param  string
		items  []string
		kind   maps.MatchKind
		parent bool
		dst    **maps.MatchList
	}{
		{"mydestination", a.Mydestination, maps.StringMatch, false, &r.mydest},
		{"virtual_alias_domains", a.VirtualAliasDomains, maps.StringMatch, false, &r.alias},
		{"virtual_mailbox_domains", a.VirtualMailboxDomains, maps.StringMatch, false, &r.mailbox},
		{"relay_domains", a.RelayDomains, maps.DomainMatch, a.RelayDomainsParentStyle, &r.relay},
	}
	for _, l := range lists {
		if len(l.items) == 0 {
			continue
		}
		d.registerTypes(ctx, reg, l.items)
		*l.dst, err = maps.NewMatchList(ctx, maps.MatchListConfig{
			Name: l.param, Kind: l.kind, ParentStyle: l.parent,
			Registry: reg, Options: c.cfg.MapOptions,
		}, l.items)
		if err != nil {
			return nil, &ConfigError{Param: l.param, Err: err}
		}
	}
	d.builtin = r
	d.resolver = a.Resolver
	if d.resolver == nil {
		d.resolver = r
	}
	d.mapping = maps.MappingStrategy(a.RecipientDelimiter, d.isLocalForLookup)
	d.mapping.Split = address.SplitOptions{NoOwnerRequestSpecial: !a.OwnerRequestSpecial, DoubleBounceSender: a.DoubleBounceSender}

	for _, t := range []struct {
		specs []string
		dst   *maps.List
	}{
		{a.LocalRecipientMaps, &d.localRcpt}, {a.VirtualAliasMaps, &d.virtAlias},
		{a.VirtualMailboxMaps, &d.virtMailbox}, {a.RelayRecipientMaps, &d.relayRcpt},
		{a.CanonicalMaps, &d.canonical}, {a.SenderCanonicalMaps, &d.senderCanon},
		{a.RecipientCanonicalMaps, &d.rcptCanon}, {a.SenderLoginMaps, &d.loginMaps},
	} {
		for _, spec := range t.specs {
			*t.dst = append(*t.dst, d.table(ctx, spec))
		}
	}
	return d, nil
}

// table opens a table spec through the Checker (once, with Config.Tables
// taking precedence). A table that cannot be opened fails every lookup
// with a temporary error: Postfix's surrogate table answers DICT_ERR_RETRY,
// so a missing hash:/etc/aliases makes recipient validation answer 451
// 4.3.0 (checked with Postfix 3.7.11). Postfix is built with NIS, and on
// a host without an NIS domain its lookups find nothing; postkit has no
// nis type, and answers the same, as the default alias_maps (hash:/etc/aliases,
// nis:mail.aliases) needs.
func (d *destState) table(ctx context.Context, spec string) maps.Map {
	if m, ok := d.c.cfg.Tables[spec]; ok {
		return m
	}
	if m, ok := d.c.tables[spec]; ok {
		return m
	}
	if typ, _, err := maps.SplitSpec(spec); err == nil && typ == "nis" && !d.hasType("nis") {
		d.c.log.Warn("dict_nis_init: NIS domain name not set - NIS lookups disabled", "table", spec)
		d.c.tables[spec] = maps.StaticMap(nil)
		return d.c.tables[spec]
	}
	var m maps.Map
	if slices.Contains(d.cfg.AliasMaps, spec) || strings.HasPrefix(spec, "proxy:") && slices.Contains(d.cfg.AliasMaps, spec[6:]) {
		opts := d.c.cfg.MapOptions
		opts.Aliases = true
		var err error
		if m, err = d.baseRegistry().Open(ctx, spec, opts); err != nil {
			d.c.log.Warn("cannot open table", "table", spec, "error", err)
			m = maps.FuncMap(func(context.Context, string) (string, bool, error) {
				return "", false, &maps.Error{Map: spec, Err: err}
			})
		} else {
			d.c.opened = append(d.c.opened, m)
			d.c.tables[spec] = m
			return m
		}
	} else {
		opened := len(d.c.opened)
		if m = d.c.table(ctx, spec); len(d.c.opened) != opened {
			return m
		}
		// Checker.table could not open it and made a failing table.
	}
	failing := m
	m = maps.FuncMap(func(ctx context.Context, key string) (string, bool, error) {
		_, _, err := failing.Lookup(ctx, key)
		return "", false, &maps.Error{Map: spec, Key: key, Temporary: true, Err: err}
	})
	d.c.tables[spec] = m
	return m
}

func (d *destState) baseRegistry() *maps.Registry {
	if d.c.cfg.Registry != nil {
		return d.c.cfg.Registry
	}
	return maps.Default()
}

func (d *destState) hasType(typ string) bool {
	return slices.Contains(d.baseRegistry().Types(), typ)
}

// registry returns a registry for the domain match lists whose openers go
// through d.table, so that list tables are shared with the Checker's and
// a broken one fails lookups instead of New.
func (d *destState) registry() *maps.Registry {
	reg := &maps.Registry{}
	for _, typ := range d.baseRegistry().Types() {
		d.registerType(reg, typ)
	}
	return reg
}

func (d *destState) registerType(reg *maps.Registry, typ string) {
	reg.Register(typ, func(ctx context.Context, name string, opts maps.Options) (maps.Map, error) {
		return d.table(ctx, typ+":"+name), nil
	})
}

// registerTypes adds the table types a list names that the registry does
// not know, so that they become failing (or, for nis, empty) tables.
func (d *destState) registerTypes(ctx context.Context, reg *maps.Registry, items []string) {
	known := reg.Types()
	for _, it := range items {
		for _, pat := range strings.FieldsFunc(it, func(r rune) bool { return strings.ContainsRune(", \t\r\n", r) }) {
			pat = strings.TrimLeft(pat, "!")
			if pat == "" || pat[0] == '/' || pat[0] == '[' {
				continue
			}
			if typ, _, err := maps.SplitSpec(pat); err == nil && !slices.Contains(known, typ) {
				d.registerType(reg, typ)
				known = append(known, typ)
			}
		}
	}
}

// isLocalForLookup is mail_addr_find's test for the local-part keys: the
// domain is $myorigin or resolve_local says it is local.
func (d *destState) isLocalForLookup(ctx context.Context, domain string) (bool, error) {
	if strings.EqualFold(domain, d.cfg.Myorigin) {
		return true, nil
	}
	return d.builtin.resolveLocal(ctx, domain)
}

// resolve brings addr to canonical form and classifies it, as smtpd's
// smtpd_resolve_addr does. For a sender the context address is the
// recipient and the other way round, as in smtpd_check.c. Results are
// cached for a short while, as smtpd caches them for the life of the
// process: one RCPT TO asks for the same address several times
// (reject_unauth_destination, check_recipient_access,
// reject_unlisted_recipient).
func (d *destState) resolve(ctx context.Context, e *eval, addr string, sender bool) (Resolved, error) {
	from := ""
	if e != nil {
		if sender {
			if e.stage == StageRecipient {
				from = e.s.Recipient
			}
		} else if hasSender(e.stage) {
			from = e.s.Sender
		}
	}
	key := addr
	if d.resolver != AddressResolver(d.builtin) {
		// Another resolver may route by sender.
		key = from + "\x00" + addr
	}
	now := clock.Now()
	if res, ok := d.cache.get(key, now); ok {
		return res, nil
	}
	res, err := d.resolver.Resolve(ctx, from, addr)
	if err != nil {
		if e != nil {
			e.warnf("resolve <%s>: %v", addr, err)
		}
		return res, err
	}
	d.cache.put(key, res, now)
	return res, nil
}

// resolveCache is a small lock-free cache of resolver answers: a fixed
// number of slots, each holding the last answer whose key hashed there.
type resolveCache struct {
	seed  maphash.Seed
	slots [256]atomic.Pointer[cachedResolve]
}

type cachedResolve struct {
	key     string
	res     Resolved
	expires int64
}

// resolveCacheTTL bounds how long a change to a domain list table can go
// unnoticed.
const resolveCacheTTL = 10 * time.Second

// clock is a coarse clock for the resolve cache: reading the system clock
// costs more than a cache hit on some virtual machines. While it is being
// read, a goroutine stores the time every 100 ms; it stops after a second
// without readers, so an idle program is not woken up.
var clock coarseClock

type coarseClock struct {
	now     atomic.Int64
	read    atomic.Bool // read since the last tick
	running atomic.Bool
}

// Now returns the time in Unix nanoseconds, at most about 100 ms late.
func (c *coarseClock) Now() int64 {
	if !c.read.Load() {
		c.read.Store(true)
	}
	if !c.running.Load() && c.running.CompareAndSwap(false, true) {
		c.now.Store(time.Now().UnixNano())
		go c.tick()
	}
	return c.now.Load()
}

func (c *coarseClock) tick() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for idle := 0; idle < 10; {
		<-t.C
		c.now.Store(time.Now().UnixNano())
		if c.read.Swap(false) {
			idle = 0
		} else {
			idle++
		}
	}
	c.running.Store(false)
}

func (rc *resolveCache) slot(key string) *atomic.Pointer[cachedResolve] {
	return &rc.slots[maphash.String(rc.seed, key)%uint64(len(rc.slots))]
}

func (rc *resolveCache) get(key string, now int64) (Resolved, bool) {
	if e := rc.slot(key).Load(); e != nil && e.key == key && now < e.expires {
		return e.res, true
	}
	return Resolved{}, false
}

func (rc *resolveCache) put(key string, res Resolved, now int64) {
	rc.slot(key).Store(&cachedResolve{key: key, res: res, expires: now + int64(resolveCacheTTL)})
}

// resolveFailed answers a failed resolution the way smtpd's
// reject_dict_retry does: 451 4.3.0 and the end of the stage.
func (e *eval) resolveFailed(name string) (status, error) {
	st := e.rejectText(classData, 451, "4.3.0", "<"+name+">: "+tempLookupFail)
	return st, &abort{st: st}
}

// findAddr is check_mail_addr_find: a mail_addr_find search whose lookup
// error ends the stage with 451 4.3.0 (temporary) or 451 4.3.5.
func (e *eval) findAddr(ctx context.Context, l maps.List, key, replyName string) (maps.Result, bool, error) {
	if len(l) == 0 {
		return maps.Result{}, false, nil
	}
	r, ok, err := l.FindAddress(ctx, key, e.c.dest.mapping)
	if err != nil {
		_, err = e.fail(err, replyName)
		return maps.Result{}, false, err
	}
	return r, ok, nil
}

// permitAuthDestination is permit_auth_destination's test: the recipient
// resolves to a final destination or a relay domain, and is not
// source-routed (unless allow_untrusted_routing).
func (e *eval) permitAuthDestination(ctx context.Context, rcpt string) (bool, error) {
	res, err := e.c.dest.resolve(ctx, e, rcpt, false)
	if err != nil {
		_, err = e.resolveFailed(rcpt)
		return false, err
	}
	if !strings.Contains(res.Address, "@") {
		return true, nil
	}
	if !e.c.cfg.AllowUntrustedRouting && res.Routed {
		return false, nil
	}
	return res.Class.Final() || res.Class == ClassRelay, nil
}

// rejectUnauthDestination is reject_unauth_destination and, with a 4xx
// code, defer_unauth_destination. The text has no "rejected:" part.
func (e *eval) rejectUnauthDestination(ctx context.Context, code int, dsn string) (status, error) {
	rcpt, ok := e.recipient()
	if !ok {
		return statusDunno, nil
	}
	auth, err := e.permitAuthDestination(ctx, rcpt)
	if err != nil || auth {
		return statusDunno, err
	}
	return e.rejectText(classPolicy, code, dsn, "<"+rcpt+">: Relay access denied"), nil
}

// checkSenderMaps is reject_unlisted_sender (check_sender_rcpt_maps); it
// runs at most once per MAIL FROM unless warn_if_reject was in force.
func (e *eval) checkSenderMaps(ctx context.Context, sender string) (status, error) {
	if e.c.dest.cfg.NoUnknownRecipientChecks || e.senderChecked {
		return statusDunno, nil
	}
	if e.warnIfReject == 0 {
		e.senderChecked = true
	}
	return e.checkRcptMaps(ctx, sender, true)
}

// checkRecipientMaps is reject_unlisted_recipient (check_recipient_maps);
// it runs at most once per RCPT TO unless warn_if_reject was in force.
func (e *eval) checkRecipientMaps(ctx context.Context, rcpt string) (status, error) {
	if e.c.dest.cfg.NoUnknownRecipientChecks || e.recipientChecked {
		return statusDunno, nil
	}
	if e.warnIfReject == 0 {
		e.recipientChecked = true
	}
	return e.checkRcptMaps(ctx, rcpt, false)
}

// checkRcptMaps is smtpd_check.c's check_rcpt_maps (spec §4.5): an address
// is known when a canonical or virtual alias table has it, unknown when it
// resolves to the error or retry transport, and otherwise known unless its
// address class has a recipient table that lacks it.
func (e *eval) checkRcptMaps(ctx context.Context, addr string, sender bool) (status, error) {
	d := e.c.dest
	class, unknownDSN, errDSN := nameRecipient, "5.1.1", "4.1.1"
	if sender {
		class, unknownDSN, errDSN = nameSender, "5.1.0", "4.1.0"
	}
	res, err := d.resolve(ctx, e, addr, sender)
	if err != nil {
		return e.resolveFailed(addr)
	}
	known := []maps.List{d.rcptCanon, d.canonical, d.virtAlias}
	if sender {
		known = []maps.List{d.rcptCanon, d.senderCanon, d.canonical, d.virtAlias}
	}
	for _, l := range known {
		_, ok, err := e.findAddr(ctx, l, res.Address, addr)
		if err != nil {
			return statusDunno, err
		}
		if ok {
			return statusDunno, nil
		}
	}
	switch res.Transport {
	case "error":
		dsn, text := splitDSN(unknownDSN, res.Nexthop)
		code := 550
		if res.Class == ClassVirtualAlias {
			code = d.cfg.UnknownVirtualAliasRejectCode
		}
		return e.rejectText(classBounce, code, fixDSN(dsn, class), "<"+addr+">: "+class+" rejected: "+text), nil
	case "retry":
		dsn, text := splitDSN(errDSN, res.Nexthop)
		return e.rejectText(classBounce, 450, fixDSN(dsn, class), "<"+addr+">: "+class+" rejected: "+text), nil
	}
	var (
		table maps.List
		code  int
		what  string
	)
	switch res.Class {
	case ClassLocal:
		// Mail for these is absorbed or generated by Postfix itself.
		if localIs(res.Address, d.cfg.DoubleBounceSender) || localIs(res.Address, "postmaster") ||
			localIs(res.Address, "mailer-daemon") {
			return statusDunno, nil
		}
		table, code, what = d.localRcpt, d.cfg.UnknownLocalRecipientRejectCode, " in local recipient table"
	case ClassVirtualMailbox:
		table, code, what = d.virtMailbox, d.cfg.UnknownVirtualMailboxRejectCode, " in virtual mailbox table"
	case ClassRelay:
		table, code, what = d.relayRcpt, d.cfg.UnknownRelayRecipientRejectCode, " in relay recipient table"
	default:
		return statusDunno, nil
	}
	if len(table) == 0 {
		return statusDunno, nil
	}
	_, ok, err := e.findAddr(ctx, table, res.Address, addr)
	if err != nil || ok {
		return statusDunno, err
	}
	if !d.cfg.ShowUserUnknownTableName {
		what = ""
	}
	dsn := "5.1.1"
	if sender {
		dsn = "5.1.0"
	}
	return e.rejectText(classBounce, code, dsn, "<"+addr+">: "+class+" rejected: User unknown"+what), nil
}

// localIs reports whether the local part of addr is name, ignoring case
// (smtpd_check.c's MATCH_LEFT).
func localIs(addr, name string) bool {
	n := len(name)
	return len(addr) > n && addr[n] == '@' && maps.FoldKey(addr[:n]) == maps.FoldKey(name)
}

// rejectUnverified is reject_unverified_address: ask the verifier, polling
// while a probe is pending, and answer with the unverified_* codes.
func (e *eval) rejectUnverified(ctx context.Context, addr string, sender bool) (status, error) {
	a := e.c.dest.cfg
	class, dsn := nameRecipient, "4.1.1"
	dcode, rcode, why, action := a.UnverifiedRecipientDeferCode, a.UnverifiedRecipientRejectCode,
		a.UnverifiedRecipientRejectReason, a.UnverifiedRecipientTempfailAction
	if sender {
		class, dsn = nameSender, "4.1.7"
		dcode, rcode, why, action = a.UnverifiedSenderDeferCode, a.UnverifiedSenderRejectCode,
			a.UnverifiedSenderRejectReason, a.UnverifiedSenderTempfailAction
	}
	deferAll := action == "defer"
	prefix := "<" + addr + ">: " + class + " rejected: "

	var (
		st     VerifyStatus
		reason string
		err    error
	)
	if a.Verifier == nil {
		err = fmt.Errorf("no address verification service")
	}
	for count := 0; err == nil; {
		st, reason, err = a.Verifier.Verify(ctx, addr)
		if err != nil || st != VerifyPending {
			break
		}
		if count++; count >= a.VerifyPollCount {
			break
		}
		if serr := e.sleep(ctx, a.VerifyPollDelay); serr != nil {
			return statusDunno, serr
		}
	}
	if err != nil {
		e.warnf("verify service failure: %v", err)
		return e.deferIfPermitText(deferAll, classPolicy, 450, dsn, prefix+"address verification problem"), nil
	}
	code := 0
	switch st {
	case VerifyPending, VerifyDeferred:
		code = dcode
	case VerifyUndeliverable:
		code = rcode
	}
	if code >= 400 && why != "" {
		reason = why
	}
	switch code / 100 {
	case 0, 2:
		return statusDunno, nil
	case 4:
		if len(reason) > 250 {
			reason = reason[:250]
		}
		return e.deferIfPermitText(deferAll, classPolicy, code, dsn, prefix+"unverified address: "+reason), nil
	}
	return e.rejectText(classPolicy, code, dsn, prefix+"undeliverable address: "+reason), nil
}

// deferIfPermitText is DEFER_IF_PERMIT with a complete reply text.
func (e *eval) deferIfPermitText(deferAll bool, class errClass, code int, dsn, text string) status {
	if e.warnIfReject == 0 && !deferAll {
		deferIf(&e.deferIfPermit, class, code, dsn, text)
		return statusDunno
	}
	return e.rejectText(class, code, dsn, text)
}

func (e *eval) sleep(ctx context.Context, d time.Duration) error {
	if e.c.cfg.Sleep != nil {
		return e.c.cfg.Sleep(ctx, d)
	}
	return sleepCtx(ctx, d)
}

// sender returns the MAIL FROM address when there is a non-null one.
func (e *eval) sender() (string, bool) {
	if !hasSender(e.stage) || e.s.Sender == "" {
		return "", false
	}
	return e.s.Sender, true
}

var destBuiltins = mergeBuiltins(addressBuiltins, loginBuiltins)

func mergeBuiltins(sets ...map[string]*builtin) map[string]*builtin {
	all := map[string]*builtin{}
	for _, s := range sets {
		for k, v := range s {
			all[k] = v
		}
	}
	return all
}

var addressBuiltins = map[string]*builtin{
	"permit_auth_destination": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		rcpt, ok := e.recipient()
		if !ok {
			return statusDunno, nil
		}
		auth, err := e.permitAuthDestination(ctx, rcpt)
		if err != nil || !auth {
			return statusDunno, err
		}
		return e.permit(ctx, el.raw, nameRecipient, rcpt, ""), nil
	}},
	"reject_unauth_destination": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		return e.rejectUnauthDestination(ctx, e.c.dest.cfg.RelayDomainsRejectCode, "5.7.1")
	}},
	"defer_unauth_destination": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		return e.rejectUnauthDestination(ctx, e.c.dest.cfg.RelayDomainsRejectCode-100, "4.7.1")
	}},
	// check_relay_domains (deprecated since Postfix 2.2, gone in 3.9):
	// permit a client whose name matches relay_domains or an authorized
	// destination, reject anything else.
	"check_relay_domains": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		d := e.c.dest
		d.checkRelayOnce.Do(func() {
			e.warnf("support for restriction \"check_relay_domains\" will be removed from Postfix; use \"reject_unauth_destination\" instead")
		})
		rcpt, ok := e.recipient()
		if !ok {
			return statusDunno, nil
		}
		// Postfix ignores a lookup error here.
		if ok, _ := matchDomain(ctx, d.builtin.relay, e.s.clientName()); ok {
			return e.permit(ctx, el.raw, nameRecipient, rcpt, ""), nil
		}
		auth, err := e.permitAuthDestination(ctx, rcpt)
		if err != nil {
			return statusDunno, err
		}
		if auth {
			return e.permit(ctx, el.raw, nameRecipient, rcpt, ""), nil
		}
		return e.rejectText(classPolicy, d.cfg.RelayDomainsRejectCode, "5.7.1",
			"<"+rcpt+">: "+nameRecipient+" rejected: Relay access denied"), nil
	}},
	"reject_unlisted_recipient": {run: rejectUnlistedRecipient},
	"check_recipient_maps":      {run: rejectUnlistedRecipient},
	"reject_unlisted_sender": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if sender, ok := e.sender(); ok {
			return e.checkSenderMaps(ctx, sender)
		}
		return statusDunno, nil
	}},
	"reject_unverified_sender": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if sender, ok := e.sender(); ok {
			return e.rejectUnverified(ctx, sender, true)
		}
		return statusDunno, nil
	}},
	"reject_unverified_recipient": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		if rcpt, ok := e.recipient(); ok && rcpt != "" {
			return e.rejectUnverified(ctx, rcpt, false)
		}
		return statusDunno, nil
	}},
}

func rejectUnlistedRecipient(ctx context.Context, e *eval, el *elem) (status, error) {
	if rcpt, ok := e.recipient(); ok && rcpt != "" {
		return e.checkRecipientMaps(ctx, rcpt)
	}
	return statusDunno, nil
}
