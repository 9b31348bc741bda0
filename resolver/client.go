package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults for the zero values of Config. Timeout and Attempts are those of
// resolv.conf(5); the TTL caps are common resolver settings (Unbound caps
// positive answers at a day and negative ones at an hour by default).
const (
	DefaultTimeout     = 5 * time.Second
	DefaultAttempts    = 2
	DefaultCacheSize   = 10000
	DefaultMaxTTL      = 24 * time.Hour
	DefaultNegativeTTL = time.Hour

	// maxFailureTTL caps Config.FailureTTL: RFC 2308 section 7 forbids
	// remembering a server failure for longer than five minutes.
	maxFailureTTL = 5 * time.Minute

	// maxCNAMEs bounds the CNAME chain followed inside one answer, like
	// the stub resolvers of glibc and Go (RFC 1034 section 3.6.2 asks for
	// chains to be followed, and for loops to be caught).
	maxCNAMEs = 8

	// ednsSize is the UDP payload size advertised with EDNS0 (RFC 6891
	// section 6.2.5); 4096 is what stub resolvers commonly send.
	ednsSize = 4096
)

// Config says which servers a Client asks and how. The zero value of every
// field but Servers is a useful default.
type Config struct {
	// Servers are the recursive resolvers to ask, as IP addresses with an
	// optional port: "192.0.2.53", "192.0.2.53:5353", "2001:db8::53",
	// "[2001:db8::53]:5353". The port is 53 unless given. Each lookup
	// tries them in order (see Rotate) until one gives an answer that is
	// not a failure.
	Servers []string
	// Timeout is how long one query to one server may take; 0 means
	// DefaultTimeout (resolv.conf "options timeout:").
	Timeout time.Duration
	// Attempts is how many rounds over all servers a lookup makes before
	// it fails; 0 means DefaultAttempts (resolv.conf "options attempts:").
	Attempts int
	// Rotate starts each lookup at the next server in turn instead of the
	// first, spreading the load (resolv.conf "options rotate").
	Rotate bool
	// TCP sends every query over TCP instead of UDP first (resolv.conf
	// "options use-vc").
	TCP bool
	// CacheSize is how many answers the cache holds before the least
	// recently used one goes; 0 means DefaultCacheSize, negative turns the
	// cache off. Identical lookups in flight at the same time share one
	// query either way.
	CacheSize int
	// MaxTTL caps how long a positive answer is cached, whatever its TTL;
	// 0 means DefaultMaxTTL, negative means positive answers are not cached.
	MaxTTL time.Duration
	// NegativeTTL caps how long NXDOMAIN and NODATA answers are cached
	// (RFC 2308 section 5: the lesser of the SOA's TTL and its MINIMUM
	// field; answers without an SOA are not cached); 0 means
	// DefaultNegativeTTL, negative means negative answers are not cached.
	NegativeTTL time.Duration
	// FailureTTL is how long SERVFAIL, REFUSED, timeouts and other
	// temporary failures are remembered, so a dead DNSBL is not asked for
	// every client; 0 or negative means they are not cached at all.
	// Values above five minutes count as five minutes (RFC 2308 section 7).
	FailureTTL time.Duration
	// Now returns the current time for cache expiry; nil means time.Now.
	// Tests inject a clock here.
	Now func() time.Time
}

// Stats counts what a Client has done since New.
type Stats struct {
	Lookups   uint64 // calls of the Lookup methods, malformed names excepted
	CacheHits uint64 // lookups answered from the cache
	Shared    uint64 // lookups that waited for an identical query already in flight
	Queries   uint64 // DNS messages sent, retries and TCP fallbacks included
	Entries   int    // answers in the cache now
}

// Client is the Resolver that asks DNS servers over the network with
// github.com/miekg/dns. It is safe for concurrent use; make one and share
// it, since the cache and the in-flight deduplication are per Client.
//
// Each lookup sends one question with EDNS0 (4096-byte UDP payload) and
// RD set over UDP, repeats it over TCP when the answer comes back truncated
// (RFC 7766 section 5), and moves on to the next server on a timeout, a
// network error, SERVFAIL, REFUSED or a malformed reply. NXDOMAIN and
// NODATA are final. CNAME chains inside an answer are followed, and only
// records of the type asked count. Names are compared and cached case-
// insensitively and come back lower case without the trailing dot.
//
// A malformed name (empty, a label over 63 or a name over 253 characters,
// characters other than letters, digits, '_', '-' and '.', a label starting
// or ending in '-', or all digits) is answered without a query with an
// error for which IsNotFound and IsNXDomain are true, as Postfix does.
type Client struct {
	servers  []string
	timeout  time.Duration
	attempts int
	rotate   bool
	tcp      bool
	maxTTL   time.Duration
	negTTL   time.Duration
	failTTL  time.Duration
	now      func() time.Time

	udpClient, tcpClient *dns.Client

	next atomic.Uint64 // next server to start at, with Rotate

	mu      sync.Mutex
	cache   *lru // nil when caching is off
	flights map[key]*flight

	lookups, hits, shared, sent atomic.Uint64
}

// flight is one question being asked on behalf of every lookup that waits
// for it.
type flight struct {
	done    chan struct{}
	ans     answer // set before done is closed
	waiters int    // lookups still waiting; guarded by Client.mu
	cancel  context.CancelFunc
}

// New returns a Client for cfg. It fails when cfg names no server or a
// server that is not an IP address.
func New(cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("resolver: no DNS servers configured")
	}
	c := &Client{
		timeout:  cfg.Timeout,
		attempts: cfg.Attempts,
		rotate:   cfg.Rotate,
		tcp:      cfg.TCP,
		maxTTL:   cfg.MaxTTL,
		negTTL:   cfg.NegativeTTL,
		failTTL:  min(cfg.FailureTTL, maxFailureTTL),
		now:      cfg.Now,
		flights:  make(map[key]*flight),
	}
	for _, s := range cfg.Servers {
		addr, err := serverAddr(s)
		if err != nil {
			return nil, err
		}
		c.servers = append(c.servers, addr)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.attempts <= 0 {
		c.attempts = DefaultAttempts
	}
	if c.maxTTL == 0 {
		c.maxTTL = DefaultMaxTTL
	}
	if c.negTTL == 0 {
		c.negTTL = DefaultNegativeTTL
	}
	if c.now == nil {
		c.now = time.Now
	}
	switch {
	case cfg.CacheSize == 0:
		c.cache = newLRU(DefaultCacheSize)
	case cfg.CacheSize > 0:
		c.cache = newLRU(cfg.CacheSize)
	}
	c.udpClient = &dns.Client{Net: "udp", Timeout: c.timeout, UDPSize: ednsSize}
	c.tcpClient = &dns.Client{Net: "tcp", Timeout: c.timeout}
	return c, nil
}

// serverAddr turns a Config.Servers entry into "host:port" form.
func serverAddr(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() {
			return netip.AddrPortFrom(a, 53).String(), nil
		}
	}
	return "", fmt.Errorf("resolver: DNS server %q: want an IP address with an optional port", s)
}

// Stats returns the counters of c.
func (c *Client) Stats() Stats {
	s := Stats{
		Lookups:   c.lookups.Load(),
		CacheHits: c.hits.Load(),
		Shared:    c.shared.Load(),
		Queries:   c.sent.Load(),
	}
	if c.cache != nil {
		c.mu.Lock()
		s.Entries = c.cache.len()
		c.mu.Unlock()
	}
	return s
}

// Flush empties the cache. Lookups in flight are not affected.
func (c *Client) Flush() {
	if c.cache == nil {
		return
	}
	c.mu.Lock()
	c.cache = newLRU(c.cache.max)
	c.mu.Unlock()
}

// LookupMX implements Resolver. A null MX (RFC 7505: one record, preference
// 0, exchange ".") comes back as MX{Host: "", Pref: 0}.
func (c *Client) LookupMX(ctx context.Context, name string) ([]MX, error) {
	ans, err := c.lookup(ctx, name, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	return slices.Clone(ans.mx), nil
}

// LookupA implements Resolver.
func (c *Client) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	ans, err := c.lookup(ctx, name, name, dns.TypeA)
	if err != nil {
		return nil, err
	}
	return slices.Clone(ans.addrs), nil
}

// LookupAAAA implements Resolver.
func (c *Client) LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error) {
	ans, err := c.lookup(ctx, name, name, dns.TypeAAAA)
	if err != nil {
		return nil, err
	}
	return slices.Clone(ans.addrs), nil
}

// LookupPTR implements Resolver: it asks for the PTR records of addr's
// in-addr.arpa or ip6.arpa name (an IPv4-mapped address counts as IPv4).
// Errors name addr, as the standard library's LookupAddr does.
func (c *Client) LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	ans, err := c.lookup(ctx, ptrName(addr), addr.String(), dns.TypePTR)
	if err != nil {
		return nil, err
	}
	return slices.Clone(ans.strs), nil
}

// LookupTXT implements Resolver. The bytes of each character string come
// back as they were on the wire, without escapes.
func (c *Client) LookupTXT(ctx context.Context, name string) ([]string, error) {
	ans, err := c.lookup(ctx, name, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	return slices.Clone(ans.strs), nil
}

// LookupNS implements Resolver.
func (c *Client) LookupNS(ctx context.Context, name string) ([]string, error) {
	ans, err := c.lookup(ctx, name, name, dns.TypeNS)
	if err != nil {
		return nil, err
	}
	return slices.Clone(ans.strs), nil
}

var _ Resolver = (*Client)(nil)

// lookup answers the question (qname, qtype) from the cache, from a query
// already in flight, or by starting one. errName is the name errors carry.
// The query runs on its own context so that one caller giving up does not
// fail the others waiting for it; it is cancelled when the last one leaves.
func (c *Client) lookup(ctx context.Context, qname, errName string, qtype uint16) (answer, error) {
	name, ok := canonicalName(qname)
	if !ok {
		f := &failure{cause: errInvalidName, notFound: true}
		return answer{}, f.dnsError(errName)
	}
	c.lookups.Add(1)
	k := key{name, qtype}

	c.mu.Lock()
	if c.cache != nil {
		if ans, ok := c.cache.get(k, c.now()); ok {
			c.mu.Unlock()
			c.hits.Add(1)
			return ans, ans.err(errName)
		}
	}
	if err := ctx.Err(); err != nil {
		c.mu.Unlock()
		return answer{}, contextFailure(err).dnsError(errName)
	}
	f, ok := c.flights[k]
	if ok {
		c.shared.Add(1)
	} else {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel}
		c.flights[k] = f
		go c.fly(fctx, k, f)
	}
	f.waiters++
	c.mu.Unlock()

	select {
	case <-f.done:
		return f.ans, f.ans.err(errName)
	case <-ctx.Done():
		c.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			f.cancel()
			if c.flights[k] == f {
				delete(c.flights, k)
			}
		}
		c.mu.Unlock()
		return answer{}, contextFailure(ctx.Err()).dnsError(errName)
	}
}

// fly resolves k for flight f, caches the answer and wakes the waiters.
func (c *Client) fly(ctx context.Context, k key, f *flight) {
	ans := c.resolve(ctx, k)
	c.mu.Lock()
	if c.flights[k] == f {
		delete(c.flights, k)
	}
	// An answer cut short because every waiter left is not an answer
	// from DNS; it is not cached.
	if c.cache != nil && ans.ttl > 0 && ctx.Err() == nil {
		c.cache.put(k, ans, c.now().Add(ans.ttl))
	}
	c.mu.Unlock()
	f.ans = ans
	close(f.done)
	f.cancel()
}

func (a answer) err(name string) error {
	if a.fail == nil {
		return nil
	}
	return a.fail.dnsError(name)
}

func contextFailure(err error) *failure {
	return &failure{cause: err, timeout: errors.Is(err, context.DeadlineExceeded)}
}

// resolve asks the servers in turn, Attempts rounds, until one gives a final
// answer, and returns the last failure otherwise.
func (c *Client) resolve(ctx context.Context, k key) answer {
	q := new(dns.Msg)
	q.SetQuestion(k.name+".", k.qtype)
	q.RecursionDesired = true
	q.SetEdns0(ednsSize, false)

	n := len(c.servers)
	start := 0
	if c.rotate && n > 1 {
		start = int((c.next.Add(1) - 1) % uint64(n))
	}
	var last answer
	for range c.attempts {
		for i := range n {
			server := c.servers[(start+i)%n]
			if err := ctx.Err(); err != nil {
				return answer{fail: contextFailure(err)}
			}
			r, fail := c.exchange(ctx, q, server)
			if fail != nil {
				if ctx.Err() != nil {
					return answer{fail: contextFailure(ctx.Err())}
				}
				last = answer{fail: fail}
				continue
			}
			ans, final := c.interpret(k, r, server)
			if final {
				return ans
			}
			last = ans
		}
	}
	if last.fail != nil {
		last.ttl = c.failTTL
	}
	return last
}

// exchange sends q to server and returns the reply: over UDP, then over TCP
// when the reply is truncated (RFC 7766 section 5), and once more without
// EDNS0 when a server rejects the OPT record with FORMERR (RFC 6891
// section 7). miekg/dns does none of these by itself.
func (c *Client) exchange(ctx context.Context, q *dns.Msg, server string) (*dns.Msg, *failure) {
	proto := c.udpClient
	if c.tcp {
		proto = c.tcpClient
	}
	r, fail := c.exchangeOnce(ctx, proto, q, server)
	if fail != nil {
		return nil, fail
	}
	if r.Rcode == dns.RcodeFormatError && r.IsEdns0() == nil {
		plain := q.Copy()
		plain.Extra = nil
		if r, fail = c.exchangeOnce(ctx, proto, plain, server); fail != nil {
			return nil, fail
		}
	}
	if r.Truncated && proto == c.udpClient {
		if r, fail = c.exchangeOnce(ctx, c.tcpClient, q, server); fail != nil {
			return nil, fail
		}
	}
	return r, nil
}

// exchangeOnce sends q to server once over the client's transport, with a
// fresh message ID, and waits at most Timeout. miekg/dns applies only the
// context's deadline to reads, so the connection is closed when ctx is
// cancelled for the read to end at once.
func (c *Client) exchangeOnce(ctx context.Context, dc *dns.Client, q *dns.Msg, server string) (*dns.Msg, *failure) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	m := q.Copy()
	m.Id = dns.Id()
	c.sent.Add(1)
	conn, err := dc.DialContext(ctx, server)
	if err != nil {
		return nil, netFailure(ctx, err, server)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r, _, err := dc.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		return nil, netFailure(ctx, err, server)
	}
	if !r.Response || len(r.Question) != 1 || r.Question[0].Qtype != q.Question[0].Qtype ||
		!equalFold(r.Question[0].Name, q.Question[0].Name) {
		return nil, &failure{cause: errBadReply, text: "reply does not match the question", server: server}
	}
	return r, nil
}

func netFailure(ctx context.Context, err error, server string) *failure {
	var ne net.Error
	if ctx.Err() == context.DeadlineExceeded || (errors.As(err, &ne) && ne.Timeout()) {
		return &failure{cause: errTimeout, text: "i/o timeout", server: server, timeout: true}
	}
	return &failure{cause: err, server: server}
}

// interpret turns reply r into an answer for k. final is false when another
// server should be asked (SERVFAIL, REFUSED, a lame referral, ...).
func (c *Client) interpret(k key, r *dns.Msg, server string) (ans answer, final bool) {
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	case dns.RcodeServerFailure:
		return answer{fail: &failure{cause: errServFail, text: "server misbehaving", server: server}}, false
	case dns.RcodeRefused:
		return answer{fail: &failure{cause: errRefused, server: server}}, false
	default:
		return answer{fail: &failure{cause: errBadReply, text: "server answered " + rcodeName(r.Rcode), server: server}}, false
	}

	// Follow the CNAME chain from the name asked (RFC 1034 section 3.6.2);
	// only records owned by the name the chain has reached, of the type
	// asked and class IN, count. The answer's TTL is the least of the TTLs
	// of every record used.
	target := k.name + "."
	minTTL := uint32(1<<32 - 1)
	var rrs []dns.RR
	for hops := 0; ; hops++ {
		var cname *dns.CNAME
		for _, rr := range r.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !equalFold(h.Name, target) {
				continue
			}
			if h.Rrtype == k.qtype {
				rrs = append(rrs, rr)
				minTTL = min(minTTL, h.Ttl)
			} else if cn, ok := rr.(*dns.CNAME); ok && cname == nil {
				cname = cn
			}
		}
		if len(rrs) > 0 || cname == nil {
			break
		}
		if hops == maxCNAMEs {
			return answer{fail: &failure{cause: errCNAMELoop, server: server}}, true
		}
		minTTL = min(minTTL, cname.Hdr.Ttl)
		target = cname.Target
	}

	if len(rrs) > 0 {
		ans = convert(k.qtype, rrs)
		if ans.mx != nil || ans.addrs != nil || ans.strs != nil {
			ans.ttl = ttlCap(time.Duration(minTTL)*time.Second, c.maxTTL)
			return ans, true
		}
		// Records of the type asked that do not hold what the type
		// holds (an A record of the wrong length): a broken reply.
		return answer{fail: &failure{cause: errBadReply, server: server}}, false
	}

	// A negative answer. RFC 2308 section 5: its TTL is the lesser of the
	// SOA record's TTL and MINIMUM field from the authority section; an
	// answer without an SOA is not cached.
	var soa *dns.SOA
	for _, rr := range r.Ns {
		if s, ok := rr.(*dns.SOA); ok {
			soa = s
			break
		}
	}
	if r.Rcode == dns.RcodeSuccess && soa == nil && !r.Authoritative && !r.RecursionAvailable && hasNS(r.Ns) {
		// A referral from a server that will not recurse for us is not
		// an answer (the standard library calls it a lame referral).
		return answer{fail: &failure{cause: errBadReply, text: "lame referral", server: server}}, false
	}
	f := &failure{cause: errNoData, text: "no " + dns.TypeToString[k.qtype] + " record", server: server, notFound: true}
	if r.Rcode == dns.RcodeNameError {
		f = &failure{cause: errNXDomain, server: server, notFound: true}
	}
	ans = answer{fail: f}
	if soa != nil {
		ttl := min(soa.Hdr.Ttl, soa.Minttl, minTTL)
		ans.ttl = ttlCap(time.Duration(ttl)*time.Second, c.negTTL)
	}
	return ans, true
}

func ttlCap(ttl, limit time.Duration) time.Duration {
	if limit < 0 {
		return 0
	}
	return min(ttl, limit)
}

func hasNS(rrs []dns.RR) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeNS {
			return true
		}
	}
	return false
}

func rcodeName(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return "RCODE " + strconv.Itoa(rcode)
}

// convert turns the records of one RRset into the form Resolver returns.
func convert(qtype uint16, rrs []dns.RR) answer {
	var ans answer
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.MX:
			if qtype == dns.TypeMX {
				ans.mx = append(ans.mx, MX{Host: hostName(v.Mx), Pref: v.Preference})
			}
		case *dns.A:
			if a, ok := netip.AddrFromSlice(v.A.To4()); ok && qtype == dns.TypeA {
				ans.addrs = append(ans.addrs, a)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(v.AAAA.To16()); ok && len(v.AAAA) == net.IPv6len && qtype == dns.TypeAAAA {
				ans.addrs = append(ans.addrs, a)
			}
		case *dns.PTR:
			if qtype == dns.TypePTR {
				ans.strs = append(ans.strs, hostName(v.Ptr))
			}
		case *dns.NS:
			if qtype == dns.TypeNS {
				ans.strs = append(ans.strs, hostName(v.Ns))
			}
		case *dns.TXT:
			if qtype == dns.TypeTXT {
				var s string
				for _, part := range v.Txt {
					s += unescapeTXT(part)
				}
				ans.strs = append(ans.strs, s)
			}
		}
	}
	return ans
}

// equalFold compares domain names ASCII case-insensitively (RFC 4343).
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
