package restrictions

// The restrictions that ask DNS (postconf(5), smtpd_check.c):
// reject_unknown_helo_hostname, reject_unknown_sender_domain,
// reject_unknown_recipient_domain, the check_*_{mx,ns,a}_access family and
// permit_mx_backup here; the DNS allow and deny lists in dnsbl.go.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/resolver"
)

// DefaultRBLReply is Postfix 3.7's default_rbl_reply.
const DefaultRBLReply = "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain${rbl_reason?; $rbl_reason}"

// The values of the *_tempfail_action parameters.
const (
	TempfailDeferIfPermit = "defer_if_permit" // go on, but do not accept in the end
	TempfailDefer         = "defer"           // answer 4xx now
)

// DNSConfig configures the restrictions that ask DNS. Zero fields take
// Postfix 3.7's defaults when the Checker is built.
type DNSConfig struct {
	// Resolver answers the queries; nil leaves the restrictions without
	// DNS: they answer as for a temporary DNS failure (a DNS list is then
	// "not listed", with a warning).
	Resolver resolver.Resolver

	// UnknownHostnameRejectCode is unknown_hostname_reject_code (450),
	// for reject_unknown_helo_hostname.
	UnknownHostnameRejectCode int
	// UnknownAddressRejectCode is unknown_address_reject_code (450), for
	// reject_unknown_sender_domain and reject_unknown_recipient_domain.
	UnknownAddressRejectCode int
	// UnknownHeloTempfailAction is unknown_helo_hostname_tempfail_action
	// and UnknownAddressTempfailAction unknown_address_tempfail_action:
	// what a temporary DNS failure does, TempfailDeferIfPermit (the
	// default, $reject_tempfail_action) or TempfailDefer.
	UnknownHeloTempfailAction    string
	UnknownAddressTempfailAction string

	// MapsRBLRejectCode is maps_rbl_reject_code (554), $rbl_code in
	// reply templates.
	MapsRBLRejectCode int
	// DefaultRBLReply is default_rbl_reply, the template of a DNSBL
	// rejection (DefaultRBLReply when empty).
	DefaultRBLReply string
	// RBLReplyMaps is rbl_reply_maps: table specs mapping a DNSBL
	// argument as written ("zen.example" or "zen.example=127.0.0.2") to a
	// reply template.
	RBLReplyMaps []string
	// MapsRBLDomains is maps_rbl_domains, the lists of the deprecated
	// reject_maps_rbl.
	MapsRBLDomains []string

	// PermitMXBackupNetworks is permit_mx_backup_networks: when set,
	// permit_mx_backup requires every address of the primary MX hosts to
	// match it (host match list syntax, like mynetworks).
	PermitMXBackupNetworks []string
	// MXBackupNetworksParentStyle: permit_mx_backup_networks is listed in
	// parent_domain_matches_subdomains (the default).
	MXBackupNetworksParentStyle bool

	// RBLCacheSize bounds the DNSBL answers a Checker remembers (1000
	// when not positive); RBLCacheTTL is how long it remembers one (one
	// minute when not positive), a failed lookup at most ten seconds.
	// Postfix keeps them for the life of an smtpd process; the resolver's
	// own cache honours the DNS TTLs below that.
	RBLCacheSize int
	RBLCacheTTL  time.Duration
}

func defaultDNSConfig() DNSConfig {
	return DNSConfig{
		UnknownHostnameRejectCode:    450,
		UnknownAddressRejectCode:     450,
		UnknownHeloTempfailAction:    TempfailDeferIfPermit,
		UnknownAddressTempfailAction: TempfailDeferIfPermit,
		MapsRBLRejectCode:            554,
		DefaultRBLReply:              DefaultRBLReply,
		MXBackupNetworksParentStyle:  true,
	}
}

// dnsConfigFrom reads the DNS parameters of main.cf.
func dnsConfigFrom(p *params) DNSConfig {
	cfg := DNSConfig{
		UnknownHostnameRejectCode:    p.Int("unknown_hostname_reject_code"),
		UnknownAddressRejectCode:     p.Int("unknown_address_reject_code"),
		UnknownHeloTempfailAction:    p.Str("unknown_helo_hostname_tempfail_action"),
		UnknownAddressTempfailAction: p.Str("unknown_address_tempfail_action"),
		MapsRBLRejectCode:            p.Int("maps_rbl_reject_code"),
		DefaultRBLReply:              p.Str("default_rbl_reply"),
		RBLReplyMaps:                 p.List("rbl_reply_maps"),
		MapsRBLDomains:               p.List("maps_rbl_domains"),
		PermitMXBackupNetworks:       p.List("permit_mx_backup_networks"),
		MXBackupNetworksParentStyle:  p.ParentStyle("permit_mx_backup_networks"),
	}
	_, err := tempfailAction("unknown_helo_hostname_tempfail_action", cfg.UnknownHeloTempfailAction)
	p.Keep(err)
	_, err = tempfailAction("unknown_address_tempfail_action", cfg.UnknownAddressTempfailAction)
	p.Keep(err)
	return cfg
}

// tempfailAction parses a *_tempfail_action value (smtpd_check_init's
// tempfail_actions, case-insensitive): true means "defer".
func tempfailAction(param, v string) (deferAll bool, err error) {
	switch strings.ToLower(v) {
	case "", TempfailDeferIfPermit:
		return false, nil
	case TempfailDefer:
		return true, nil
	}
	return false, &ConfigError{Param: param, Err: fmt.Errorf("bad configuration: %s = %s", param, v)}
}

// dnsState is the DNS part of a Checker.
type dnsState struct {
	cfg       DNSConfig
	r         resolver.Resolver
	deferHelo bool // unknown_helo_hostname_tempfail_action = defer
	deferAddr bool // unknown_address_tempfail_action = defer

	replyMaps  maps.List
	mxNetworks *maps.MatchList

	cache   *rblCache
	filters sync.Map // filter text -> filterResult
	// groups maps each DNS list element of a restriction list (or class)
	// to all the DNS list elements that list reaches, for prefetch.
	groups map[*elem]*rblGroup
	// sequential turns prefetching off (benchmarks compare).
	sequential bool

	mapsRBLOnce sync.Once
}

func newDNSState(ctx context.Context, c *Checker) (*dnsState, error) {
	cfg := c.cfg.DNS
	def := defaultDNSConfig()
	zero := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	zero(&cfg.UnknownHostnameRejectCode, def.UnknownHostnameRejectCode)
	zero(&cfg.UnknownAddressRejectCode, def.UnknownAddressRejectCode)
	zero(&cfg.MapsRBLRejectCode, def.MapsRBLRejectCode)
	if cfg.RBLCacheSize <= 0 {
		cfg.RBLCacheSize = defaultRBLCacheSize
	}
	if cfg.RBLCacheTTL <= 0 {
		cfg.RBLCacheTTL = defaultRBLCacheTTL
	}
	if cfg.DefaultRBLReply == "" {
		cfg.DefaultRBLReply = def.DefaultRBLReply
	}
	d := &dnsState{r: cfg.Resolver}
	var err error
	if d.deferHelo, err = tempfailAction("unknown_helo_hostname_tempfail_action", cfg.UnknownHeloTempfailAction); err != nil {
		return nil, err
	}
	if d.deferAddr, err = tempfailAction("unknown_address_tempfail_action", cfg.UnknownAddressTempfailAction); err != nil {
		return nil, err
	}
	if cfg.UnknownHeloTempfailAction == "" {
		cfg.UnknownHeloTempfailAction = TempfailDeferIfPermit
	}
	if cfg.UnknownAddressTempfailAction == "" {
		cfg.UnknownAddressTempfailAction = TempfailDeferIfPermit
	}
	c.cfg.DNS = cfg
	d.cfg = cfg
	d.cache = newRBLCache(cfg.RBLCacheSize, cfg.RBLCacheTTL)
	for _, spec := range cfg.RBLReplyMaps {
		d.replyMaps = append(d.replyMaps, c.table(ctx, spec))
	}
	if len(cfg.PermitMXBackupNetworks) > 0 {
		d.mxNetworks, err = maps.NewMatchList(ctx, maps.MatchListConfig{
			Name: "permit_mx_backup_networks", Kind: maps.HostMatch,
			ParentStyle: cfg.MXBackupNetworksParentStyle,
			Registry:    c.cfg.Registry, Options: c.cfg.MapOptions,
		}, cfg.PermitMXBackupNetworks)
		if err != nil {
			return nil, &ConfigError{Param: "permit_mx_backup_networks", Err: err}
		}
	}
	d.buildGroups(c)
	return d, nil
}

var dnsBuiltins = map[string]*builtin{
	"reject_unknown_helo_hostname":    {run: rejectUnknownHelo},
	"reject_unknown_hostname":         {run: rejectUnknownHelo},
	"reject_unknown_sender_domain":    {run: rejectUnknownSender},
	"reject_unknown_address":          {run: rejectUnknownSender},
	"reject_unknown_recipient_domain": {run: rejectUnknownRecipient},
	"permit_mx_backup":                {run: permitMXBackup},
	"reject_maps_rbl":                 {run: rejectMapsRBL},

	"check_client_mx_access":                  serverAccess(qMX, clientTarget),
	"check_client_ns_access":                  serverAccess(qNS, clientTarget),
	"check_client_a_access":                   serverAccess(qA, clientTarget),
	"check_reverse_client_hostname_mx_access": serverAccess(qMX, reverseTarget),
	"check_reverse_client_hostname_ns_access": serverAccess(qNS, reverseTarget),
	"check_reverse_client_hostname_a_access":  serverAccess(qA, reverseTarget),
	"check_helo_mx_access":                    serverAccess(qMX, heloTarget),
	"check_helo_ns_access":                    serverAccess(qNS, heloTarget),
	"check_helo_a_access":                     serverAccess(qA, heloTarget),
	"check_sender_mx_access":                  serverAccess(qMX, senderTarget),
	"check_sender_ns_access":                  serverAccess(qNS, senderTarget),
	"check_sender_a_access":                   serverAccess(qA, senderTarget),
	"check_recipient_mx_access":               serverAccess(qMX, recipientTarget),
	"check_recipient_ns_access":               serverAccess(qNS, recipientTarget),
	"check_recipient_a_access":                serverAccess(qA, recipientTarget),
}

func init() {
	for name, x := range dnsxls {
		dnsBuiltins[name] = &builtin{arg: argDomain, run: runDNSXL(x)}
	}
}

// ---------------------------------------------------------------------
// Lookups and their outcome, in Postfix's terms (dns.h).

// dnsStatus is the outcome of one or more DNS queries for a name, ordered
// by Postfix's precedence when several record types are asked: a success
// beats a temporary failure, which beats a malformed reply, which beats a
// null MX, which beats "not found".
type dnsStatus int

const (
	dnsNotFound dnsStatus = iota // NXDOMAIN or NODATA (DNS_NOTFOUND)
	dnsNullMX                    // the domain has a null MX (DNS_NULLMX)
	dnsInval                     // only malformed records (DNS_INVAL)
	dnsRetry                     // SERVFAIL, timeout, ... (DNS_RETRY)
	dnsOK
)

// errNoResolver is the failure of every lookup when no resolver is
// configured.
var errNoResolver = errors.New("no DNS resolver configured")

func classify(err error) dnsStatus {
	if resolver.IsNotFound(err) {
		return dnsNotFound
	}
	return dnsRetry
}

// dnsErrText is the h_errno text Postfix shows for a failed DNS query
// (dns_strerror).
func dnsErrText(err error) string {
	switch {
	case err == nil:
		return "Host not found"
	case resolver.IsNXDomain(err):
		return "Host not found"
	case resolver.IsNotFound(err):
		return "Host found but no data record of requested type"
	}
	return "Host not found, try again"
}

// addrErrText is the getaddrinfo text Postfix shows when a host's
// addresses cannot be found (MAI_STRERROR).
func addrErrText(err error) string {
	if resolver.IsNotFound(err) {
		return "Name or service not known"
	}
	return "Temporary failure in name resolution"
}

// Query types of the lookups here.
const (
	qA = iota
	qAAAA
	qMX
	qNS
)

var qNames = [...]string{"A", "AAAA", "MX", "NS"}

// validRRName is Postfix's valid_rr_name: a host name in a record must
// be valid; a numeric one passes with a warning.
func validRRName(e *eval, qtype int, qname, host string) bool {
	switch {
	case validHostaddr(host):
		e.warnf("numeric domain name in resource data of %s record for %s: %s", qNames[qtype], qname, host)
		return true
	case address.ValidHostname(host) != nil:
		if len(host) > 100 {
			host = host[:100]
		}
		e.warnf("malformed domain name in resource data of %s record for %s: %s", qNames[qtype], qname, host)
		return false
	}
	return true
}

// lookupMX returns the MX records of name. A null MX anywhere in the
// answer is dnsNullMX; records with malformed host names are dropped, and
// an answer of only those is dnsInval (dns_get_answer).
func (d *dnsState) lookupMX(ctx context.Context, e *eval, name string) ([]resolver.MX, dnsStatus, error) {
	if d.r == nil {
		return nil, dnsRetry, errNoResolver
	}
	mxs, err := d.r.LookupMX(ctx, name)
	if err != nil {
		return nil, classify(err), err
	}
	out := make([]resolver.MX, 0, len(mxs))
	for _, mx := range mxs {
		if mx.Host == "" {
			return nil, dnsNullMX, nil
		}
		if validRRName(e, qMX, name, mx.Host) {
			out = append(out, mx)
		}
	}
	if len(out) == 0 {
		if len(mxs) == 0 {
			return nil, dnsNotFound, nil
		}
		return nil, dnsInval, nil
	}
	return out, dnsOK, nil
}

// lookupNS returns the name servers of name, malformed names dropped.
func (d *dnsState) lookupNS(ctx context.Context, e *eval, name string) ([]string, dnsStatus, error) {
	if d.r == nil {
		return nil, dnsRetry, errNoResolver
	}
	nss, err := d.r.LookupNS(ctx, name)
	if err != nil {
		return nil, classify(err), err
	}
	out := make([]string, 0, len(nss))
	for _, ns := range nss {
		if validRRName(e, qNS, name, ns) {
			out = append(out, ns)
		}
	}
	if len(out) == 0 {
		if len(nss) == 0 {
			return nil, dnsNotFound, nil
		}
		return nil, dnsInval, nil
	}
	return out, dnsOK, nil
}

// lookupAddr asks for the A or AAAA records of name.
func (d *dnsState) lookupAddr(ctx context.Context, qtype int, name string) ([]netip.Addr, dnsStatus, error) {
	if d.r == nil {
		return nil, dnsRetry, errNoResolver
	}
	var addrs []netip.Addr
	var err error
	if qtype == qA {
		addrs, err = d.r.LookupA(ctx, name)
	} else {
		addrs, err = d.r.LookupAAAA(ctx, name)
	}
	if err != nil {
		return nil, classify(err), err
	}
	if len(addrs) == 0 {
		return nil, dnsNotFound, nil
	}
	return addrs, dnsOK, nil
}

// lookupAddrs returns the IPv4 and IPv6 addresses of a host, as
// getaddrinfo gives them to Postfix: an error only when neither exists.
func (d *dnsState) lookupAddrs(ctx context.Context, host string) ([]netip.Addr, dnsStatus, error) {
	a4, st4, err4 := d.lookupAddr(ctx, qA, host)
	a6, st6, err6 := d.lookupAddr(ctx, qAAAA, host)
	if st4 == dnsOK || st6 == dnsOK {
		return append(a4, a6...), dnsOK, nil
	}
	if st6 > st4 {
		return nil, st6, err6
	}
	return nil, st4, err4
}

// hostStatus is dns_lookup_l(name, A, AAAA, MX) with STOP_OK, as
// reject_unknown_hostname asks: does the name have an address or a mail
// exchanger? The best outcome of the queries made counts.
func (d *dnsState) hostStatus(ctx context.Context, e *eval, name string) dnsStatus {
	best := dnsNotFound
	for _, q := range []int{qA, qAAAA, qMX} {
		var st dnsStatus
		if q == qMX {
			_, st, _ = d.lookupMX(ctx, e, name)
		} else {
			_, st, _ = d.lookupAddr(ctx, q, name)
		}
		if st == dnsOK {
			return dnsOK
		}
		best = max(best, st)
	}
	return best
}

// mailhostStatus is dns_lookup_l(name, MX, A, AAAA) as
// reject_unknown_mailhost asks: an MX answer that is good, null or
// malformed decides; otherwise an address will do.
func (d *dnsState) mailhostStatus(ctx context.Context, e *eval, name string) dnsStatus {
	_, st, _ := d.lookupMX(ctx, e, name)
	if st == dnsOK || st == dnsNullMX || st == dnsInval {
		return st
	}
	best := st
	for _, q := range []int{qA, qAAAA} {
		_, st, _ := d.lookupAddr(ctx, q, name)
		if st == dnsOK {
			return dnsOK
		}
		best = max(best, st)
	}
	return best
}

// ---------------------------------------------------------------------
// reject_unknown_*.

// rejectUnknownHelo is reject_unknown_helo_hostname: the HELO name must
// have an A, AAAA or MX record (a null MX is fine for an MTA's name). An
// address literal is checked for syntax only.
func rejectUnknownHelo(ctx context.Context, e *eval, el *elem) (status, error) {
	helo := e.s.Helo
	if helo == "" {
		return statusDunno, nil
	}
	if helo[0] == '[' {
		return e.rejectInvalidHostaddr(helo), nil
	}
	d := e.c.dns
	prefix := "<" + helo + ">: " + nameHelo + " rejected: "
	switch d.hostStatus(ctx, e, helo) {
	case dnsOK, dnsNullMX:
		return statusDunno, nil
	case dnsRetry:
		var st status
		withReply(e, helo, nameHelo, func() {
			st = e.deferIfPermitArm(d.deferHelo, classPolicy, 450, "4.7.1", "Host not found")
		})
		return st, nil
	case dnsInval:
		return e.rejectText(classPolicy, d.cfg.UnknownHostnameRejectCode, "4.7.1", prefix+"Malformed DNS server reply"), nil
	}
	return e.rejectText(classPolicy, d.cfg.UnknownHostnameRejectCode, "4.7.1", prefix+"Host not found"), nil
}

func rejectUnknownSender(ctx context.Context, e *eval, el *elem) (status, error) {
	if !hasSender(e.stage) || e.s.Sender == "" {
		return statusDunno, nil
	}
	return e.rejectUnknownAddress(ctx, e.s.Sender, nameSender)
}

func rejectUnknownRecipient(ctx context.Context, e *eval, el *elem) (status, error) {
	rcpt, ok := e.recipient()
	if !ok || rcpt == "" {
		return statusDunno, nil
	}
	return e.rejectUnknownAddress(ctx, rcpt, nameRecipient)
}

// rejectUnknownAddress is reject_unknown_address: the domain of a sender
// or recipient that is not one of ours must have an MX or address record,
// and no null MX (RFC 7505 section 4.2: 550 5.7.27 for a sender, 556
// 5.1.10 for a recipient).
func (e *eval) rejectUnknownAddress(ctx context.Context, addr, class string) (status, error) {
	res, err := e.c.dest.resolve(ctx, e, addr, class == nameSender)
	if err != nil {
		return e.resolveFailed(addr)
	}
	at := strings.LastIndexByte(res.Address, '@')
	if at < 0 {
		return statusDunno, nil
	}
	domain := res.Address[at+1:]
	if destFinal(res) || strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		return statusDunno, nil
	}
	if !isASCII(domain) {
		if a, err := address.ToASCII(domain); err == nil {
			domain = a
		}
	}
	d := e.c.dns
	sender := class == nameSender
	dsn := "4.1.2"
	if sender {
		dsn = "4.1.8"
	}
	prefix := "<" + addr + ">: " + class + " rejected: "
	switch d.mailhostStatus(ctx, e, domain) {
	case dnsOK:
		return statusDunno, nil
	case dnsNullMX:
		code, nullDSN := 556, "4.1.10"
		if sender {
			code, nullDSN = 550, "4.7.27"
		}
		return e.rejectText(classPolicy, code, nullDSN, prefix+"Domain "+domain+" does not accept mail (nullMX)"), nil
	case dnsRetry:
		var st status
		withReply(e, addr, class, func() {
			st = e.deferIfPermitArm(d.deferAddr, classPolicy, 450, dsn, "Domain not found")
		})
		return st, nil
	case dnsInval:
		return e.rejectText(classPolicy, d.cfg.UnknownAddressRejectCode, dsn, prefix+"Malformed DNS server reply"), nil
	}
	return e.rejectText(classPolicy, d.cfg.UnknownAddressRejectCode, dsn, prefix+"Domain not found"), nil
}

// ---------------------------------------------------------------------
// check_*_{mx,ns,a}_access.

// serverTarget returns what a check_*_{mx,ns,a}_access restriction looks
// at: the name or address, the reply name and class, and whether it
// applies now.
type serverTarget func(e *eval) (name, replyName, replyClass string, ok bool)

func clientTarget(e *eval) (string, string, string, bool) {
	n := e.s.clientName()
	return n, e.namaddr(), nameClient, !strings.EqualFold(n, "unknown")
}

func reverseTarget(e *eval) (string, string, string, bool) {
	n := e.s.reverseName()
	return n, n, nameRevClient, !strings.EqualFold(n, "unknown")
}

func heloTarget(e *eval) (string, string, string, bool) {
	return e.s.Helo, e.s.Helo, nameHelo, e.s.Helo != ""
}

func senderTarget(e *eval) (string, string, string, bool) {
	return e.s.Sender, e.s.Sender, nameSender, hasSender(e.stage) && e.s.Sender != ""
}

func recipientTarget(e *eval) (string, string, string, bool) {
	r, ok := e.recipient()
	return r, r, nameRecipient, ok && r != ""
}

// serverAccess builds check_<what>_<qtype>_access. An OK from the table
// is refused: the DNS data is under the client's control.
func serverAccess(qtype int, target serverTarget) *builtin {
	return &builtin{arg: argTable, run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		name, replyName, replyClass, ok := target(e)
		if !ok {
			return statusDunno, nil
		}
		st, err := e.checkServerAccess(ctx, el, name, qtype, replyName, replyClass)
		if err != nil {
			return st, err
		}
		return e.forbidAllowlist(el.name, st, name)
	}}
}

// checkServerAccess is check_server_access: the MX hosts (or name
// servers, or the host itself for A) of the domain of name are looked up
// in the table by name and then by each of their addresses. A domain
// without MX records is its own MX host, a domain without NS records has
// those of its parent domains, an address literal is its own MX or A
// host, and a null MX or a failed lookup applies no restriction.
func (e *eval) checkServerAccess(ctx context.Context, el *elem, name string, qtype int, replyName, replyClass string) (status, error) {
	d := e.c.dns
	domain := name
	if at := strings.LastIndexByte(name, '@'); at >= 0 {
		domain = name[at+1:]
	}
	if strings.HasPrefix(domain, "[") {
		if qtype != qA && qtype != qMX || !strings.HasSuffix(domain, "]") {
			return statusDunno, nil
		}
		a, ok := literalAddr(domain[1 : len(domain)-1])
		if !ok {
			return statusDunno, nil
		}
		st, _, err := e.checkAddrAccess(ctx, el, a, replyName, replyClass)
		return st, err
	}
	if !isASCII(domain) {
		if a, err := address.ToASCII(domain); err == nil {
			domain = a
		}
	}
	var servers []string
	switch qtype {
	case qA:
		servers = []string{domain}
	case qMX:
		mxs, st, err := d.lookupMX(ctx, e, domain)
		switch st {
		case dnsNullMX:
			return statusDunno, nil
		case dnsNotFound:
			servers = []string{domain}
		case dnsOK:
			for _, mx := range mxs {
				servers = append(servers, mx.Host)
			}
		default:
			e.warnf("Unable to look up MX host for %s: %s", domain, dnsStatusText(st, err))
			return statusDunno, nil
		}
	case qNS:
		nss, st, err := d.lookupNS(ctx, e, domain)
		where := domain
		for st == dnsNotFound {
			dot := strings.IndexByte(where, '.')
			if dot < 0 || dot+1 == len(where) {
				where = name
				break
			}
			where = where[dot+1:]
			nss, st, err = d.lookupNS(ctx, e, where)
		}
		if st != dnsOK {
			e.warnf("Unable to look up NS host for %s: %s", where, dnsStatusText(st, err))
			return statusDunno, nil
		}
		servers = nss
	}
	for _, server := range servers {
		if validHostaddr(server) {
			st, found, err := e.checkAddrAccess(ctx, el, server, replyName, replyClass)
			if err != nil || st != statusDunno || found {
				return st, err
			}
			continue
		}
		if qtype != qA {
			st, found, err := e.checkDomainAccess(ctx, el, server, replyName, replyClass)
			if err != nil || st != statusDunno || found {
				return st, err
			}
		}
		addrs, st, err := d.lookupAddrs(ctx, server)
		if st != dnsOK {
			if qtype != qA {
				e.warnf("Unable to look up %s host %s for %s %s: %s", qNames[qtype], server, replyClass, replyName, addrErrText(err))
			}
			continue
		}
		for _, a := range addrs {
			st, found, err := e.checkAddrAccess(ctx, el, a.String(), replyName, replyClass)
			if err != nil || st != statusDunno || found {
				return st, err
			}
		}
	}
	return statusDunno, nil
}

// dnsStatusText describes a failed lookup for a warning.
func dnsStatusText(st dnsStatus, err error) string {
	switch st {
	case dnsInval:
		return "Malformed DNS server reply"
	case dnsNullMX:
		return "Domain does not accept mail (nullMX)"
	}
	return dnsErrText(err)
}

// literalAddr returns the address inside an address literal ("1.2.3.4"
// or "IPv6:2001:db8::1") in the form access tables are searched with
// (valid_mailhost_addr).
func literalAddr(s string) (string, bool) {
	if !validMailhostAddr(s) {
		return "", false
	}
	if len(s) > 5 && strings.EqualFold(s[:5], "IPv6:") {
		s = s[5:]
	}
	return s, true
}

// ---------------------------------------------------------------------
// permit_mx_backup.

// permitMXBackup is permit_mx_backup (Postfix 3.7): accept a recipient
// whose domain lists this host as an MX host other than a primary one,
// and, with permit_mx_backup_networks, whose primary MX hosts all have
// addresses in those networks. Local and relay domains are accepted as by
// permit_auth_destination. A DNS failure turns a later rejection into a
// deferral.
func permitMXBackup(ctx context.Context, e *eval, el *elem) (status, error) {
	rcpt, ok := e.recipient()
	if !ok {
		return statusDunno, nil
	}
	res, err := e.c.dest.resolve(ctx, e, rcpt, false)
	if err != nil {
		return e.resolveFailed(rcpt)
	}
	at := strings.LastIndexByte(res.Address, '@')
	if at < 0 {
		return e.permit(ctx, el.name, nameRecipient, rcpt, ""), nil
	}
	domain := res.Address[at+1:]
	if !e.c.cfg.AllowUntrustedRouting && res.Routed {
		return statusDunno, nil
	}
	if destFinal(res) || destRelay(res) {
		return e.permit(ctx, el.name, nameRecipient, rcpt, ""), nil
	}
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		return statusDunno, nil
	}
	if !isASCII(domain) {
		if a, err := address.ToASCII(domain); err == nil {
			domain = a
		}
	}
	d := e.c.dns
	mxs, st, err := d.lookupMX(ctx, e, domain)
	if st != dnsOK {
		if st == dnsRetry {
			withReply(e, rcpt, nameRecipient, func() {
				e.deferIfRejectArm(classPolicy, 450, "4.4.4",
					"Unable to look up mail exchanger information: "+dnsErrText(err))
			})
		}
		return statusDunno, nil
	}
	// The primary MX hosts are those of the best preference; the rest
	// are backups.
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	n := 1
	for n < len(mxs) && mxs[n].Pref == mxs[0].Pref {
		n++
	}
	primary, backup := mxs[:n], mxs[n:]
	var ok2 bool
	withReply(e, rcpt, nameRecipient, func() {
		if d.iAmMX(ctx, e, primary) || len(backup) == 0 || !d.iAmMX(ctx, e, backup) {
			return
		}
		if d.mxNetworks != nil && !d.primaryAllowed(ctx, e, primary) {
			return
		}
		ok2 = true
	})
	if !ok2 {
		return statusDunno, nil
	}
	return e.permit(ctx, el.name, nameRecipient, rcpt, ""), nil
}

// iAmMX is i_am_mx: one of the hosts is this machine, by name
// (mydestination) or by address (inet_interfaces, proxy_interfaces).
func (d *dnsState) iAmMX(ctx context.Context, e *eval, mxs []resolver.MX) bool {
	for _, mx := range mxs {
		if e.isLocalHostname(ctx, mx.Host) {
			return true
		}
	}
	for _, mx := range mxs {
		addrs, st, err := d.lookupAddrs(ctx, mx.Host)
		if st != dnsOK {
			e.deferIfRejectArm(classPolicy, 450, "4.4.4",
				"Unable to look up mail exchanger host "+mx.Host+": "+addrErrText(err))
			continue
		}
		for _, a := range addrs {
			if containsAddr(e.c.cfg.OwnAddrs, a) {
				return true
			}
		}
	}
	return false
}

// primaryAllowed is permit_mx_primary: every address of every primary MX
// host matches permit_mx_backup_networks.
func (d *dnsState) primaryAllowed(ctx context.Context, e *eval, mxs []resolver.MX) bool {
	for _, mx := range mxs {
		addrs, st, err := d.lookupAddrs(ctx, mx.Host)
		if st != dnsOK {
			e.deferIfRejectArm(classPolicy, 450, "4.4.4",
				"Unable to look up host "+mx.Host+" as mail exchanger: "+dnsErrText(err))
			return false
		}
		for _, a := range addrs {
			ok, err := d.mxNetworks.MatchHost(ctx, mx.Host, a.String())
			if err != nil {
				e.warnf("all_auth_mx_addr: permit_mx_backup_networks lookup error for address %s for %s", a, mx.Host)
				e.deferIfRejectArm(classPolicy, 450, "4.4.4",
					"Unable to verify host "+mx.Host+" as mail exchanger")
				return false
			}
			if !ok {
				return false
			}
		}
	}
	return true
}

// ---------------------------------------------------------------------
// What the address classes (dest.go) tell the DNS restrictions.

// destFinal reports whether a resolved address is in a final destination
// (RESOLVE_CLASS_FINAL: mydestination, inet_interfaces, proxy_interfaces,
// virtual_alias_domains, virtual_mailbox_domains).
func destFinal(res Resolved) bool { return res.Final }

// destRelay reports whether a resolved address is in relay_domains
// (RESOLVE_CLASS_RELAY).
func destRelay(res Resolved) bool { return res.Class == ClassRelay }

// authDestination is permit_auth_destination's test.
func (e *eval) authDestination(ctx context.Context, rcpt string) (bool, error) {
	return e.permitAuthDestination(ctx, rcpt)
}

// isLocalHostname is resolve_local: host is this machine by name
// ($mydestination) or is one of its address literals. A lookup error
// counts as "no", as in i_am_mx.
func (e *eval) isLocalHostname(ctx context.Context, host string) bool {
	ok, err := e.c.dest.builtin.resolveLocal(ctx, host)
	return err == nil && ok
}
