package restrictions

// DNS allow and deny lists: reject_rbl_client, reject_rhsbl_*,
// permit_dnswl_client, permit_rhswl_client and reject_maps_rbl
// (postconf(5); smtpd_check.c find_dnsxl_addr, find_dnsxl_domain,
// rbl_reject_reply), with a per-Checker cache of answers and concurrent
// lookups of the lists named in one restriction list.

import (
	clist "container/list"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/resolver"
)

// rblTxtLimit bounds the TXT text kept for $rbl_reason (RBL_TXT_LIMIT).
const rblTxtLimit = 500

// rblLookupTimeout bounds a lookup that runs on after the check that
// started it has gone (its context is detached so that a cancelled check
// cannot poison the answer other checks wait for).
const rblLookupTimeout = time.Minute

// Defaults of the DNSBL answer cache.
const (
	defaultRBLCacheSize = 1000
	defaultRBLCacheTTL  = time.Minute
	// rblSoftTTL is how long a lookup failure is remembered (at most), so
	// that a dead list is not asked for every client yet recovers soon.
	rblSoftTTL = 10 * time.Second
)

// ---------------------------------------------------------------------
// Reply filters: the "=127.0.0.[2..11]" after a DNSBL domain.

// octetRange is one member of a filter field: a number, or a range lo..hi.
type octetRange struct {
	lo, hi  uint8
	isRange bool
}

// rblFilter is a parsed DNSBL reply filter (postconf(5)
// reject_rbl_client "domain=d.d.d.d"; Postfix's ip_match(3) syntax): four
// fields separated by ".", each a decimal number 0..255 or a "[...]"
// sequence of ";"-separated numbers and "n..m" ranges. A filter matches an
// IPv4 address when every field matches its octet. The pattern as a whole
// may be wrapped in one pair of "[]".
type rblFilter struct {
	fields [4][]octetRange
	// wild records which fields were written as "[...]", for String.
	wild [4]bool
}

// filterToken kinds besides the literal byte of a one-character token.
const (
	tokNumber = 256 + iota // a decimal number 0..255
	tokBadNum              // a decimal number above 255
	tokEOF                 // the end of the pattern
)

// filterLexer splits a filter pattern into numbers and single characters,
// remembering where the last token started for error messages.
type filterLexer struct {
	s          string
	pos, start int
}

func (l *filterLexer) next() (kind, val int) {
	l.start = l.pos
	if l.pos >= len(l.s) {
		return tokEOF, 0
	}
	c := l.s[l.pos]
	if !isDigit(c) {
		l.pos++
		return int(c), 0
	}
	kind = tokNumber
	for l.pos < len(l.s) && isDigit(l.s[l.pos]) {
		if kind == tokNumber {
			val = val*10 + int(l.s[l.pos]-'0')
			if val > 255 {
				kind = tokBadNum
			}
		}
		l.pos++
	}
	return kind, val
}

// fail formats a parse error with the context Postfix shows: the pattern
// with the offending token between '>' and '<'.
func (l *filterLexer) fail(msg string) error {
	return fmt.Errorf("%s at \"%s>%s<%s\"", msg, l.s[:l.start], l.s[l.start:l.pos], l.s[l.pos:])
}

// parseRBLFilter parses a reply filter. The error texts are Postfix's
// (ip_match_parse), which smtpd logs as "RBL reply error: ...".
func parseRBLFilter(pattern string) (*rblFilter, error) {
	if strings.HasPrefix(pattern, "[") {
		// Strip one pair of brackets around the whole pattern, if the
		// bracket that closes the first one is the last character.
		depth, end := 0, -1
		for i := 0; i < len(pattern); i++ {
			if pattern[i] == '[' {
				depth++
			} else if pattern[i] == ']' {
				if depth--; depth == 0 {
					end = i
					break
				}
			}
		}
		if end < 0 {
			return nil, fmt.Errorf("missing \"]\" character")
		}
		if end == len(pattern)-1 {
			pattern = pattern[1:end]
		}
	}
	if pattern == "" {
		return nil, fmt.Errorf("empty address pattern")
	}
	f := &rblFilter{}
	l := &filterLexer{s: pattern}
	for field := 0; ; field++ {
		kind, val := l.next()
		switch kind {
		case tokNumber:
			f.fields[field] = []octetRange{{lo: uint8(val), hi: uint8(val)}}
		case '[':
			f.wild[field] = true
			for {
				kind, val = l.next()
				if kind != tokNumber {
					return nil, l.fail("need decimal number 0..255")
				}
				lo := val
				kind, val = l.next()
				if kind == '.' {
					k2, _ := l.next()
					k3, hi := 0, 0
					if k2 == '.' {
						k3, hi = l.next()
					}
					if k2 != '.' || k3 != tokNumber || lo > hi {
						return nil, l.fail("numeric range error")
					}
					f.fields[field] = append(f.fields[field], octetRange{uint8(lo), uint8(hi), true})
					kind, _ = l.next()
				} else {
					f.fields[field] = append(f.fields[field], octetRange{lo: uint8(lo), hi: uint8(lo)})
				}
				if kind == ';' {
					continue
				}
				if kind == ']' {
					break
				}
				return nil, l.fail("need \";\" or \"]\"")
			}
		default:
			return nil, l.fail("need decimal number 0..255 or \"[\"")
		}
		if field == 3 {
			if l.pos < len(l.s) {
				l.next()
				return nil, l.fail("garbage after pattern")
			}
			return f, nil
		}
		if kind, _ := l.next(); kind != '.' {
			return nil, l.fail("need \".\"")
		}
	}
}

// match reports whether the IPv4 address a matches the filter; other
// addresses never do.
func (f *rblFilter) match(a netip.Addr) bool {
	a = a.Unmap()
	if !a.Is4() {
		return false
	}
	b := a.As4()
	for i, field := range f.fields {
		ok := false
		for _, r := range field {
			if b[i] >= r.lo && b[i] <= r.hi {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// String renders the filter in its canonical form, as Postfix's
// ip_match_dump does: numbers without leading zeros, no outer brackets.
func (f *rblFilter) String() string {
	var b strings.Builder
	for i, field := range f.fields {
		if i > 0 {
			b.WriteByte('.')
		}
		if !f.wild[i] {
			b.WriteString(strconv.Itoa(int(field[0].lo)))
			continue
		}
		b.WriteByte('[')
		for j, r := range field {
			if j > 0 {
				b.WriteByte(';')
			}
			b.WriteString(strconv.Itoa(int(r.lo)))
			if r.isRange {
				b.WriteString("..")
				b.WriteString(strconv.Itoa(int(r.hi)))
			}
		}
		b.WriteByte(']')
	}
	return b.String()
}

// ---------------------------------------------------------------------
// The answer cache.

// rblResult is what one DNSBL query name resolved to.
type rblResult struct {
	listed bool         // the name has A records
	soft   bool         // the lookup failed with something other than "not found"
	addrs  []netip.Addr // the A records, when listed
	txt    string       // the TXT records joined with " / ", when listed
	why    string       // the failure, when soft
}

// rblEntry is one cached or in-flight lookup. done is closed when res and
// expires are set; they are not written after that.
type rblEntry struct {
	key     string
	done    chan struct{}
	res     rblResult
	expires time.Time
	warned  atomic.Bool // the soft failure has been reported by a check
	el      *clist.Element
}

// rblCache holds DNSBL answers for the life of a Checker, bounded in size
// (least recently used first out) and in age, so that a client checked at
// every RCPT of a session, and in the next sessions, costs one lookup per
// list. Entries in flight are shared: a check that needs a name another
// check is already asking waits for that answer.
type rblCache struct {
	mu      sync.Mutex
	m       map[string]*rblEntry
	lru     clist.List // of *rblEntry, most recently used first
	max     int
	ttl     time.Duration
	softTTL time.Duration
	now     func() time.Time
}

func newRBLCache(max int, ttl time.Duration) *rblCache {
	soft := rblSoftTTL
	if ttl < soft {
		soft = ttl
	}
	return &rblCache{m: map[string]*rblEntry{}, max: max, ttl: ttl, softTTL: soft, now: time.Now}
}

// entry returns the entry for key, creating it and calling start (outside
// the lock) when there is none or it has expired.
func (c *rblCache) entry(key string, start func(*rblEntry)) *rblEntry {
	c.mu.Lock()
	if en, ok := c.m[key]; ok {
		select {
		case <-en.done:
			if c.now().Before(en.expires) {
				c.lru.MoveToFront(en.el)
				c.mu.Unlock()
				return en
			}
			c.remove(en)
		default:
			c.mu.Unlock()
			return en
		}
	}
	en := &rblEntry{key: key, done: make(chan struct{})}
	en.el = c.lru.PushFront(en)
	c.m[key] = en
	for len(c.m) > c.max {
		c.remove(c.lru.Back().Value.(*rblEntry))
	}
	c.mu.Unlock()
	start(en)
	return en
}

func (c *rblCache) remove(en *rblEntry) {
	c.lru.Remove(en.el)
	if c.m[en.key] == en {
		delete(c.m, en.key)
	}
}

// flush forgets every answer (benchmarks measure uncached lookups with it).
func (c *rblCache) flush() {
	c.mu.Lock()
	c.m = map[string]*rblEntry{}
	c.lru.Init()
	c.mu.Unlock()
}

// rblQueryKey is the form of a query name used as cache key and sent to the
// resolver: lower case, without the trailing dot.
func rblQueryKey(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// startRBL makes sure a lookup of query is cached or under way.
func (d *dnsState) startRBL(ctx context.Context, query string) *rblEntry {
	return d.cache.entry(rblQueryKey(query), func(en *rblEntry) {
		go d.resolveRBL(ctx, en)
	})
}

// resolveRBL asks for the A records of en.key and, when there are some,
// its TXT records (rbl_pagein). A failure other than "not found" is
// remembered as soft: Postfix does not block mail because a list is down.
func (d *dnsState) resolveRBL(parent context.Context, en *rblEntry) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), rblLookupTimeout)
	defer cancel()
	var res rblResult
	if d.r == nil {
		res.soft, res.why = true, "no DNS resolver configured"
	} else {
		addrs, err := d.r.LookupA(ctx, en.key)
		switch {
		case err == nil && len(addrs) > 0:
			res.listed, res.addrs = true, addrs
			if txts, err := d.r.LookupTXT(ctx, en.key); err == nil {
				res.txt = joinTXT(txts)
			}
		case err == nil || resolver.IsNotFound(err):
		default:
			res.soft, res.why = true, err.Error()
		}
	}
	ttl := d.cache.ttl
	if res.soft {
		ttl = d.cache.softTTL
	}
	en.res = res
	en.expires = d.cache.now().Add(ttl)
	close(en.done)
}

// joinTXT joins TXT records with " / " up to rblTxtLimit bytes, as
// rbl_pagein does; bytes that are not printable ASCII become spaces
// (dns_get_rr).
func joinTXT(txts []string) string {
	var b []byte
	for i, t := range txts {
		left := rblTxtLimit - len(b)
		if left <= 0 {
			break
		}
		if len(t) > left {
			t = t[:left]
		}
		for j := 0; j < len(t); j++ {
			c := t[j]
			if c < 0x20 || c >= 0x7f {
				c = ' '
			}
			b = append(b, c)
		}
		if i+1 < len(txts) && rblTxtLimit-len(b) > 3 {
			b = append(b, " / "...)
		}
	}
	return string(b)
}

// waitRBL waits for the answer for query, reporting a soft failure as a
// warning the first time a check sees it (Postfix logs it once, when the
// lookup is made).
func (d *dnsState) waitRBL(ctx context.Context, e *eval, query string) rblResult {
	en := d.startRBL(ctx, query)
	select {
	case <-en.done:
	case <-ctx.Done():
		e.warnf("%s: RBL lookup error: %v", en.key, ctx.Err())
		return rblResult{soft: true, why: ctx.Err().Error()}
	}
	if en.res.soft && en.warned.CompareAndSwap(false, true) {
		e.warnf("%s: RBL lookup error: %s", en.key, en.res.why)
	}
	return en.res
}

// ---------------------------------------------------------------------
// The restrictions.

// dnsxl describes one DNS list restriction.
type dnsxl struct {
	permit bool   // an allow list: listed means OK
	byAddr bool   // the client address is looked up, reversed; else a name
	class  string // the reply class
	// subject returns the value looked up (the client address, or the
	// name or address whose domain is looked up), or false when the
	// restriction does not apply at this stage.
	subject func(e *eval) (string, bool)
}

func clientAddrSubject(e *eval) (string, bool) {
	if !e.s.ClientAddr.IsValid() {
		return "", false
	}
	return e.s.clientAddr(), true
}

func clientNameSubject(e *eval) (string, bool) {
	n := e.s.clientName()
	return n, !strings.EqualFold(n, "unknown")
}

var dnsxls = map[string]*dnsxl{
	"reject_rbl_client":   {byAddr: true, class: nameClient, subject: clientAddrSubject},
	"reject_rbl":          {byAddr: true, class: nameClient, subject: clientAddrSubject},
	"permit_dnswl_client": {permit: true, byAddr: true, class: nameClient, subject: clientAddrSubject},
	"reject_rhsbl_client": {class: nameClient, subject: clientNameSubject},
	"permit_rhswl_client": {permit: true, class: nameClient, subject: clientNameSubject},
	"reject_rhsbl_reverse_client": {class: nameRevClient, subject: func(e *eval) (string, bool) {
		n := e.s.reverseName()
		return n, !strings.EqualFold(n, "unknown")
	}},
	"reject_rhsbl_helo": {class: nameHelo, subject: func(e *eval) (string, bool) {
		return e.s.Helo, e.s.Helo != ""
	}},
	"reject_rhsbl_sender": {class: nameSender, subject: func(e *eval) (string, bool) {
		return e.s.Sender, hasSender(e.stage) && e.s.Sender != ""
	}},
	"reject_rhsbl_recipient": {class: nameRecipient, subject: func(e *eval) (string, bool) {
		return e.recipient()
	}},
}

// query returns the DNS name to look up in the list zone (rbl_domain
// without its "=filter") and the subject it concerns, or false when
// there is none to ask: an address-based list reverses the client address
// (32 nibbles for IPv6); a name-based list takes the domain of the
// subject, and skips address literals, names whose last label is numeric
// (some lists refuse "IP queries") and invalid names (find_dnsxl_domain).
func (x *dnsxl) query(e *eval, zone string) (query, subject string, ok bool) {
	if x.byAddr {
		// The subject (the address as text) is only needed for a reply.
		if !e.s.ClientAddr.IsValid() {
			return "", "", false
		}
		return resolver.DNSBLQuery(e.s.ClientAddr, zone), "", true
	}
	subject, ok = x.subject(e)
	if !ok {
		return "", "", false
	}
	domain := subject
	if i := strings.LastIndexByte(subject, '@'); i >= 0 {
		domain = subject[i+1:]
		if strings.HasPrefix(domain, "[") {
			return "", "", false
		}
	}
	if domain == "" {
		return "", "", false
	}
	last := domain[strings.LastIndexByte(domain, '.')+1:]
	if last == "" || allDigits(last) {
		return "", "", false
	}
	if !isASCII(domain) {
		if a, err := address.ToASCII(domain); err == nil {
			domain = a
		}
	}
	if address.ValidHostname(domain) != nil {
		return "", "", false
	}
	return domain + "." + zone, subject, true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// runDNSXL is the built-in for a DNS list restriction.
func runDNSXL(x *dnsxl) func(ctx context.Context, e *eval, el *elem) (status, error) {
	return func(ctx context.Context, e *eval, el *elem) (status, error) {
		d := e.c.dns
		d.prefetch(ctx, e, el)
		if x.permit && e.stage == StageRecipient && e.s.Recipient != "" {
			if _, ok := x.subject(e); !ok {
				return statusDunno, nil
			}
			// Safety: an allow list must not let an unauthorized
			// recipient through (permit_dnswl_addr).
			ok, err := e.authDestination(ctx, e.s.Recipient)
			if err != nil || !ok {
				return statusDunno, err
			}
		}
		return d.checkList(ctx, e, el.name, x, el.arg)
	}
}

// checkList looks the subject of x up in the list rblDomain ("zone" or
// "zone=filter") and acts on the answer.
func (d *dnsState) checkList(ctx context.Context, e *eval, name string, x *dnsxl, rblDomain string) (status, error) {
	zone, filterText, hasFilter := strings.Cut(rblDomain, "=")
	query, subject, ok := x.query(e, zone)
	if !ok {
		return statusDunno, nil
	}
	res := d.waitRBL(ctx, e, query)
	if hasFilter {
		f, err := d.filter(filterText)
		if err != nil {
			e.warnf("RBL reply error: %v", err)
			return e.serverError()
		}
		if res.listed && !matchAny(f, res.addrs) {
			res = rblResult{}
		}
	}
	if !res.listed && !(x.permit && res.soft) {
		return statusDunno, nil
	}
	if x.byAddr {
		subject = e.s.clientAddr()
	}
	switch {
	case x.permit && res.soft:
		// A lookup failure of an allow list turns a later rejection into
		// a deferral (no tempfail action is configurable for this).
		withReply(e, subject, x.class, func() {
			e.deferIfRejectArm(classPolicy, 450, "4.7.1", "Service unavailable")
		})
		return statusDunno, nil
	case x.permit:
		return e.permit(ctx, name, nameClient, e.namaddr(), ""), nil
	}
	return d.rblReply(ctx, e, res, rblDomain, subject, x.class)
}

func matchAny(f *rblFilter, addrs []netip.Addr) bool {
	for _, a := range addrs {
		if f.match(a) {
			return true
		}
	}
	return false
}

// filterResult caches the parse of a filter text.
type filterResult struct {
	f   *rblFilter
	err error
}

func (d *dnsState) filter(text string) (*rblFilter, error) {
	if v, ok := d.filters.Load(text); ok {
		r := v.(filterResult)
		return r.f, r.err
	}
	f, err := parseRBLFilter(text)
	d.filters.Store(text, filterResult{f, err})
	return f, err
}

// withReply runs fn with the reply name and class set to those of the
// thing a restriction checks, which need not be those of the list.
func withReply(e *eval, name, class string, fn func()) {
	savedName, savedClass := e.replyName, e.replyClass
	e.replyName, e.replyClass = name, class
	defer func() { e.replyName, e.replyClass = savedName, savedClass }()
	fn()
}

// rejectMapsRBL is the deprecated reject_maps_rbl: reject_rbl_client for
// each domain of maps_rbl_domains.
func rejectMapsRBL(ctx context.Context, e *eval, el *elem) (status, error) {
	d := e.c.dns
	d.mapsRBLOnce.Do(func() {
		e.warnf("support for restriction \"reject_maps_rbl\" will be removed from Postfix; use \"reject_rbl_client domain-name\" instead")
	})
	d.prefetch(ctx, e, el)
	x := dnsxls["reject_rbl_client"]
	for _, dom := range d.cfg.MapsRBLDomains {
		st, err := d.checkList(ctx, e, el.name, x, dom)
		if err != nil || st != statusDunno {
			return st, err
		}
	}
	return statusDunno, nil
}

// rblReply formats the rejection for a listed subject from the
// rbl_reply_maps template for the list, or default_rbl_reply
// (rbl_reject_reply).
func (d *dnsState) rblReply(ctx context.Context, e *eval, res rblResult, rblDomain, what, class string) (status, error) {
	zone, _, _ := strings.Cut(rblDomain, "=")
	tmpl, found := "", false
	if len(d.replyMaps) > 0 {
		// Postfix 3.7 looks the list up as written, filter included
		// (later versions also try the domain alone).
		r, ok, err := d.replyMaps.Find(ctx, rblDomain)
		if err != nil {
			e.warnf("%v", err)
			return e.serverError()
		}
		tmpl, found = r.Value, ok
	}
	vars := &rblVars{e: e, res: res, zone: zone, what: what, class: class}
	var why string
	if found {
		var ok bool
		if why, ok = vars.expand(tmpl); !ok {
			e.warnf("rbl_reject_reply: bad rbl reply template for domain %s: %s", rblDomain, tmpl)
			found = false
		}
	}
	if !found {
		var ok bool
		if why, ok = vars.expand(d.cfg.DefaultRBLReply); !ok {
			e.warnf("rbl_reject_reply: bad default rbl reply template: %s", d.cfg.DefaultRBLReply)
			return e.serverError()
		}
	}
	// The expanded text must start with a 4xx or 5xx code and a space.
	if len(why) < 4 || (why[0] != '4' && why[0] != '5') || !isDigit(why[1]) || !isDigit(why[2]) || why[3] != ' ' {
		e.warnf("rbl response code configuration error: %s", why)
		return e.rejectText(classPolicy, 450, "4.7.1", "Service unavailable"), nil
	}
	code, _ := strconv.Atoi(why[:3])
	dsn, text := splitDSN("4.7.1", why[4:])
	return e.rejectText(classPolicy, code, fixDSN(dsn, class), orDefault(text, "Service unavailable")), nil
}

// rblVars supplies the $names of an RBL reply template (rbl_expand_lookup
// and smtpd_expand_lookup).
type rblVars struct {
	e                 *eval
	res               rblResult
	zone, what, class string
	warned            map[string]bool
}

// expandFilter is smtpd_expansion_filter's default: the characters a
// value may bring into a reply; others become '_' (mac_expand).
func expandFilter(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c >= 0x7f {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; (c < 0x20 && c != '\t') || c >= 0x7f {
					b[j] = '_'
				}
			}
			return string(b)
		}
	}
	return s
}

// expand expands tmpl; false means it is bad: a syntax error, or a plain
// $name that is not defined.
func (v *rblVars) expand(tmpl string) (string, bool) {
	return expandTemplate(tmpl, v.value, func(name string) {
		if !v.warned[name] {
			if v.warned == nil {
				v.warned = map[string]bool{}
			}
			v.warned[name] = true
			v.e.warnf("unknown macro name \"%s\" in expansion request", name)
		}
	}, func(err error) { v.e.warnf("%v", err) })
}

// expandTemplate expands a reply template as Postfix's mac_expand does
// for smtpd: one level of $name forms, each value passed through the
// expansion filter. unknown is called for each name value does not know,
// warn for a syntax error. The result is not usable (false) after a
// syntax error or a plain $name that is not defined; ${name?...} and
// ${name:...} of an undefined name are just empty.
func expandTemplate(tmpl string, value func(string) (string, bool), unknown func(string), warn func(error)) (string, bool) {
	bad := false
	x := config.Expander{
		Lookup: func(name string) (string, bool) {
			val, ok := value(name)
			if !ok {
				unknown(name)
				return "", false
			}
			return expandFilter(val), true
		},
		Undefined: func(string) { bad = true },
	}
	out, err := x.Expand(tmpl)
	if err != nil {
		warn(err)
		return "", false
	}
	return out, !bad
}

func (v *rblVars) value(name string) (string, bool) {
	e, s := v.e, v.e.s
	switch name {
	case "rbl_code":
		return strconv.Itoa(e.c.dns.cfg.MapsRBLRejectCode), true
	case "rbl_domain":
		return v.zone, true
	case "rbl_reason", "rbl_txt":
		return v.res.txt, true
	case "rbl_what":
		return v.what, true
	case "rbl_class":
		return v.class, true
	case "client":
		return s.namaddr(), true
	case "client_address":
		return s.clientAddr(), true
	case "client_name":
		return s.clientName(), true
	case "client_port":
		if s.ClientPort <= 0 {
			return "unknown", true
		}
		return strconv.Itoa(s.ClientPort), true
	case "reverse_client_name":
		return s.reverseName(), true
	case "helo_name":
		return s.Helo, true
	case "server_name":
		return e.c.cfg.Addresses.Myhostname, true
	case "localtime":
		return time.Now().Format("Jan 02 15:04:05"), true
	}
	if suffix, ok := strings.CutPrefix(name, "sender"); ok {
		addr, known := s.Sender, hasSender(e.stage)
		return expandAddr(addr, known, suffix)
	}
	if suffix, ok := strings.CutPrefix(name, "recipient"); ok {
		addr, known := e.recipient()
		return expandAddr(addr, known, suffix)
	}
	return "", false
}

// expandAddr gives $sender, $sender_name and $sender_domain (and the
// recipient forms): the null address is "<>", an unknown one "".
func expandAddr(addr string, known bool, suffix string) (string, bool) {
	switch suffix {
	case "", "_name", "_domain":
	default:
		return "", false
	}
	if !known {
		return "", true
	}
	at := strings.LastIndexByte(addr, '@')
	switch suffix {
	case "":
		if addr == "" {
			return "<>", true
		}
		return addr, true
	case "_name":
		if addr == "" {
			return "<>", true
		}
		if at >= 0 {
			return addr[:at], true
		}
		return addr, true
	}
	if at >= 0 {
		return addr[at+1:], true
	}
	return "", true
}

// ---------------------------------------------------------------------
// Concurrent lookups.

// isDNSXLName reports whether a restriction name asks DNS lists.
func isDNSXLName(name string) bool {
	_, ok := dnsxls[name]
	return ok || name == "reject_maps_rbl"
}

// rblGroup is the DNS list restrictions one restriction list reaches,
// directly or through the restriction classes it names.
type rblGroup struct {
	first   *elem // the first DNS list element of the list itself
	members []*elem
}

// buildGroups finds, for every restriction list and class, the DNS list
// restrictions it holds, so that the first one evaluated can start the
// lookups of all.
func (d *dnsState) buildGroups(c *Checker) {
	d.groups = map[*elem]*rblGroup{}
	var collect func(l rlist, depth int, seen map[string]bool) []*elem
	collect = func(l rlist, depth int, seen map[string]bool) []*elem {
		var out []*elem
		for i := range l {
			el := &l[i]
			switch {
			case isDNSXLName(el.name) && el.impl != nil && !el.noArg:
				out = append(out, el)
			case el.impl == nil && el.name != "" && depth < 10 && !seen[el.name]:
				if cl, ok := c.class[el.name]; ok {
					seen[el.name] = true
					out = append(out, collect(cl, depth+1, seen)...)
				}
			}
		}
		return out
	}
	add := func(l rlist) {
		g := &rblGroup{members: collect(l, 0, map[string]bool{})}
		queries := 0
		for _, m := range g.members {
			if m.name == "reject_maps_rbl" {
				queries += len(d.cfg.MapsRBLDomains)
			} else {
				queries++
			}
		}
		if queries < 2 {
			return
		}
		for i := range l {
			if isDNSXLName(l[i].name) && l[i].impl != nil && !l[i].noArg {
				if g.first == nil {
					g.first = &l[i]
				}
				d.groups[&l[i]] = g
			}
		}
	}
	for _, l := range c.lists {
		add(l)
	}
	for _, l := range c.class {
		add(l)
	}
}

// prefetch starts, when el is the first DNS list of its restriction list,
// the lookups of all DNS lists that list reaches: they run concurrently
// while the list is evaluated in order, each element waiting for its own
// answer, so the results are those of a sequential evaluation. (A list
// that stops early leaves some answers unused but cached.)
func (d *dnsState) prefetch(ctx context.Context, e *eval, el *elem) {
	g := d.groups[el]
	if d.sequential || g == nil || g.first != el {
		return
	}
	for _, m := range g.members {
		if m.name == "reject_maps_rbl" {
			for _, dom := range d.cfg.MapsRBLDomains {
				zone, _, _ := strings.Cut(dom, "=")
				if q, _, ok := dnsxls["reject_rbl_client"].query(e, zone); ok {
					d.startRBL(ctx, q)
				}
			}
			continue
		}
		zone, _, _ := strings.Cut(m.arg, "=")
		if q, _, ok := dnsxls[m.name].query(e, zone); ok {
			d.startRBL(ctx, q)
		}
	}
}
