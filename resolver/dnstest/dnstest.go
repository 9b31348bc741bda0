// Package dnstest runs an authoritative DNS server in-process on a loopback
// port, for tests of code that looks things up through package resolver.
// It is to resolver what net/http/httptest is to net/http: every postkit
// test that needs DNS uses it, so no test asks a DNS server off the
// machine.
//
// The server is loaded from zone text in RFC 1035 master-file syntax
// ($ORIGIN, $TTL, relative names, "@"), answers UDP and TCP on the same
// port of 127.0.0.1, and answers like an authoritative server: the records
// asked for (following CNAMEs within its data), NODATA (NOERROR, no answer)
// or NXDOMAIN, with the zone's SOA in the authority section of negative
// answers so that resolvers cache them (RFC 2308). It can also misbehave
// on demand: SERVFAIL, REFUSED, silence, truncated UDP answers and slow
// answers, for chosen names.
//
//	srv := dnstest.New(t, `
//	$ORIGIN example.com.
//	@     MX 10 mx
//	mx    A  192.0.2.25
//	`)
//	r := srv.Resolver()
//	mxs, err := r.LookupMX(ctx, "example.com")
//
// The server holds one data set for all names. A name is in the zone of the
// closest SOA record above it; names under no SOA get the built-in root SOA
// ". 60 IN SOA ns.dnstest. hostmaster.dnstest. 1 3600 600 86400 60", so
// negative answers are cached for 60 seconds by default. Wildcards
// ("*.zen.example A 127.0.0.2") match names below their parent that do not
// exist otherwise (RFC 4592, simplified).
package dnstest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postkit-mail/postkit/resolver"
)

// Defaults of the Client that Server.Resolver returns: short enough that a
// test of Silent takes about a second, long enough for a loaded machine
// running the race detector to answer a loopback query in time.
const (
	DefaultTimeout  = 500 * time.Millisecond
	DefaultAttempts = 2
)

// defaultSOA answers for names under no SOA of the zone text.
const defaultSOA = ". 60 IN SOA ns.dnstest. hostmaster.dnstest. 1 3600 600 86400 60"

// maxChase bounds the CNAME chain the server follows in one answer.
const maxChase = 16

// Query is one question the server received.
type Query struct {
	Name  string // lower case, without the trailing dot
	Type  string // "A", "MX", ... (miekg/dns's names for types)
	Proto string // "udp" or "tcp"
}

// behaviour is what the server does for a name instead of answering.
type behaviour int

const (
	answerNormally behaviour = iota
	servFail
	refuse
	silent
	truncateUDP
)

// Server is a running in-process DNS server. Its methods are safe for
// concurrent use, also while queries are being answered.
type Server struct {
	addr     string
	udp, tcp *dns.Server
	t        testing.TB
	closed   chan struct{}
	once     sync.Once

	mu      sync.Mutex
	records map[string]map[uint16][]dns.RR // by lower-case FQDN, then type
	exists  map[string]bool                // names with records and their ancestors (empty non-terminals exist, RFC 8020)
	faults  map[string]behaviour           // by name or "*.zone." pattern
	delay   time.Duration
	delays  map[string]time.Duration // by name or pattern, overrides delay
	queries []Query
	soa     dns.RR
}

// New starts a server loaded with zone, or fails the test. The server is
// closed when the test ends. With New, a zone text given later to Add or
// Set that does not parse also fails the test.
func New(t testing.TB, zone string) *Server {
	t.Helper()
	s, err := Start(zone)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	s.t = t
	t.Cleanup(func() { s.Close() })
	return s
}

// Start starts a server loaded with zone, for use outside a test (an
// example, a benchmark harness); the caller must Close it.
func Start(zone string) (*Server, error) {
	soa, err := dns.NewRR(defaultSOA)
	if err != nil {
		return nil, err
	}
	s := &Server{
		closed:  make(chan struct{}),
		records: make(map[string]map[uint16][]dns.RR),
		faults:  make(map[string]behaviour),
		delays:  make(map[string]time.Duration),
		soa:     soa,
	}
	rrs, err := parse(zone)
	if err != nil {
		return nil, err
	}
	for _, rr := range rrs {
		s.add(rr)
	}
	s.reindex()
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// listen binds UDP and TCP on the same loopback port and starts serving.
func (s *Server) listen() error {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("dnstest: listening on UDP: %w", err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			// The port is free for UDP but taken for TCP; try another.
			pc.Close()
			lastErr = err
			continue
		}
		s.addr = pc.LocalAddr().String()
		h := dns.HandlerFunc(s.serveDNS)
		s.udp = &dns.Server{PacketConn: pc, Handler: h}
		s.tcp = &dns.Server{Listener: l, Handler: h}
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			started := make(chan struct{})
			errc := make(chan error, 1)
			srv.NotifyStartedFunc = func() { close(started) }
			go func() { errc <- srv.ActivateAndServe() }()
			select {
			case <-started:
			case err := <-errc:
				pc.Close()
				l.Close()
				return fmt.Errorf("dnstest: starting the server: %w", err)
			}
		}
		return nil
	}
	return fmt.Errorf("dnstest: no loopback port free for both UDP and TCP: %w", lastErr)
}

// Addr returns the server's "127.0.0.1:port", the same for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Close stops the server; answers held back by Delay are dropped.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
	})
	return err
}

// Option adjusts the resolver.Config of the Client that Resolver returns.
type Option func(*resolver.Config)

// NoCache turns the Client's cache off, so every lookup reaches the server
// (identical lookups at the same moment still share one query).
func NoCache() Option { return func(c *resolver.Config) { c.CacheSize = -1 } }

// Clock makes the Client's cache read the time from now, so a test can let
// TTLs expire without waiting.
func Clock(now func() time.Time) Option { return func(c *resolver.Config) { c.Now = now } }

// Timeout sets how long the Client waits for each answer (DefaultTimeout
// otherwise); a test of Silent makes this short.
func Timeout(d time.Duration) Option { return func(c *resolver.Config) { c.Timeout = d } }

// Resolver returns a Client that asks only this server, with
// DefaultTimeout and DefaultAttempts, its cache on and failures not cached;
// opts change that. It fails the test (or, for a Server from Start,
// panics) if the options leave a configuration resolver.New rejects.
func (s *Server) Resolver(opts ...Option) *resolver.Client {
	cfg := resolver.Config{
		Servers:  []string{s.addr},
		Timeout:  DefaultTimeout,
		Attempts: DefaultAttempts,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := resolver.New(cfg)
	if err != nil {
		if s.t != nil {
			s.t.Helper()
			s.t.Fatalf("dnstest: %v", err)
		}
		panic("dnstest: " + err.Error())
	}
	return c
}

// parse reads zone text; relative names are relative to the root unless
// $ORIGIN says otherwise, and records without a TTL get $TTL or 3600.
func parse(text string) ([]dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(text), ".", "zone")
	zp.SetDefaultTTL(3600)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("dnstest: parsing zone text: %w", err)
	}
	return rrs, nil
}

// Add parses zone text and adds its records to the server's data.
func (s *Server) Add(zone string) error {
	rrs, err := s.parse(zone)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		s.add(rr)
	}
	s.reindex()
	return nil
}

// Set parses zone text and replaces every record set (name and type) it
// holds records for with those records; other data stays.
func (s *Server) Set(zone string) error {
	rrs, err := s.parse(zone)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		h := rr.Header()
		if byType := s.records[strings.ToLower(h.Name)]; byType != nil {
			delete(byType, h.Rrtype)
		}
	}
	for _, rr := range rrs {
		s.add(rr)
	}
	s.reindex()
	return nil
}

// Remove deletes the records of name of the given types ("MX", "A", ...),
// or all its records when no type is given. An unknown type name is
// ignored.
func (s *Server) Remove(name string, types ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := fqdn(name)
	if len(types) == 0 {
		delete(s.records, n)
	}
	for _, t := range types {
		if byType := s.records[n]; byType != nil {
			delete(byType, dns.StringToType[strings.ToUpper(t)])
		}
	}
	if len(s.records[n]) == 0 {
		delete(s.records, n)
	}
	s.reindex()
}

func (s *Server) parse(zone string) ([]dns.RR, error) {
	rrs, err := parse(zone)
	if err != nil && s.t != nil {
		s.t.Helper()
		s.t.Errorf("%v", err)
	}
	return rrs, err
}

// add stores rr, dropping an exact duplicate as RFC 2181 section 5 asks.
func (s *Server) add(rr dns.RR) {
	h := rr.Header()
	name := strings.ToLower(h.Name)
	byType := s.records[name]
	if byType == nil {
		byType = make(map[uint16][]dns.RR)
		s.records[name] = byType
	}
	for _, old := range byType[h.Rrtype] {
		if dns.IsDuplicate(old, rr) {
			return
		}
	}
	byType[h.Rrtype] = append(byType[h.Rrtype], rr)
}

// reindex recomputes which names exist: every owner name and every name
// above it.
func (s *Server) reindex() {
	s.exists = make(map[string]bool, len(s.records))
	for name := range s.records {
		for n := name; ; {
			if s.exists[n] {
				break
			}
			s.exists[n] = true
			if n == "." {
				break
			}
			n = parent(n)
		}
	}
}

// ServFail makes the server answer SERVFAIL for the names, until Restore.
// A name "*.zone" stands for every name below zone; "*" for every name.
func (s *Server) ServFail(names ...string) { s.setFault(servFail, names) }

// Refuse makes the server answer REFUSED for the names, until Restore.
func (s *Server) Refuse(names ...string) { s.setFault(refuse, names) }

// Silent makes the server ignore queries for the names, until Restore: the
// resolver times out, which is a temporary error.
func (s *Server) Silent(names ...string) { s.setFault(silent, names) }

// TruncateUDP makes the server answer queries for the names over UDP with
// an empty answer and the TC bit set, until Restore, so the resolver must
// ask again over TCP (which answers normally). Answers too large for the
// client's UDP size (512 bytes, or its EDNS0 size) are truncated anyway.
func (s *Server) TruncateUDP(names ...string) { s.setFault(truncateUDP, names) }

// Restore makes the server answer the names normally again, or every name
// when none is given; delays set with DelayName for the names go as well.
func (s *Server) Restore(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(names) == 0 {
		clear(s.faults)
		clear(s.delays)
		return
	}
	for _, n := range names {
		delete(s.faults, pattern(n))
		delete(s.delays, pattern(n))
	}
}

func (s *Server) setFault(b behaviour, names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.faults[pattern(n)] = b
	}
}

// Delay makes the server wait d before every answer (0 turns it off).
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// DelayName makes the server wait d before answering the names (patterns
// as for ServFail), instead of the delay set with Delay.
func (s *Server) DelayName(d time.Duration, names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.delays[pattern(n)] = d
	}
}

// Queries returns the questions received so far, in order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// Count returns how many questions for name (any case, trailing dot
// optional) of type qtype ("A", "MX", ...; "" for any) the server received,
// over UDP and TCP together.
func (s *Server) Count(name, qtype string) int {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.queries {
		if q.Name == name && (qtype == "" || strings.EqualFold(q.Type, qtype)) {
			n++
		}
	}
	return n
}

// ResetQueries forgets the questions received so far.
func (s *Server) ResetQueries() {
	s.mu.Lock()
	s.queries = nil
	s.mu.Unlock()
}

// fqdn returns name lower case with a trailing dot.
func fqdn(name string) string { return dns.Fqdn(strings.ToLower(name)) }

// pattern returns a fault pattern in the form the maps are keyed by.
func pattern(name string) string {
	if name == "*" || name == "*." {
		return "*."
	}
	return fqdn(name)
}

// parent returns the name one label up from a lower-case FQDN; "." for a
// top-level name.
func parent(name string) string {
	for i := 0; i < len(name)-1; i++ {
		if name[i] == '\\' {
			i++
			continue
		}
		if name[i] == '.' {
			return name[i+1:]
		}
	}
	return "."
}

// match finds the entry of m for name: the name itself, else "*.p" for the
// closest parent p, up to "*." for every name.
func match[V any](m map[string]V, name string) (V, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	for n := name; n != "."; {
		n = parent(n)
		key := "*." + n
		if n == "." {
			key = "*."
		}
		if v, ok := m[key]; ok {
			return v, true
		}
	}
	var zero V
	return zero, false
}

// serveDNS answers one query.
func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, isUDP := w.LocalAddr().(*net.UDPAddr)
	proto := "tcp"
	if isUDP {
		proto = "udp"
	}
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNotImplemented)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)

	s.mu.Lock()
	s.queries = append(s.queries, Query{
		Name:  strings.TrimSuffix(name, "."),
		Type:  dns.Type(q.Qtype).String(),
		Proto: proto,
	})
	b, _ := match(s.faults, name)
	delay, ok := match(s.delays, name)
	if !ok {
		delay = s.delay
	}
	s.mu.Unlock()

	if delay > 0 {
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-s.closed:
			timer.Stop()
			return
		}
	}

	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	switch {
	case b == silent:
		return
	case b == servFail:
		m.Rcode = dns.RcodeServerFailure
	case b == refuse:
		m.Rcode = dns.RcodeRefused
	case q.Qclass != dns.ClassINET:
		m.Rcode = dns.RcodeRefused
	default:
		s.mu.Lock()
		s.answer(m, name, q.Qtype)
		s.mu.Unlock()
	}

	opt := req.IsEdns0()
	if opt != nil {
		m.SetEdns0(dns.DefaultMsgSize, false)
	}
	if isUDP {
		if b == truncateUDP {
			m.Answer, m.Ns = nil, nil
			m.Truncated = true
		}
		size := dns.MinMsgSize
		if opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// answer fills m with the answer to (name, qtype) from the server's data.
func (s *Server) answer(m *dns.Msg, name string, qtype uint16) {
	target := name
	for range maxChase {
		rrsets, owner := s.node(target)
		if rrsets == nil {
			if !s.exists[target] {
				m.Rcode = dns.RcodeNameError
			}
			m.Ns = append(m.Ns, s.soaFor(target))
			return
		}
		var found []dns.RR
		if qtype == dns.TypeANY {
			for _, rrs := range rrsets {
				found = append(found, rrs...)
			}
		} else {
			found = rrsets[qtype]
		}
		if len(found) > 0 {
			m.Answer = append(m.Answer, copyAs(found, owner)...)
			return
		}
		cnames := rrsets[dns.TypeCNAME]
		if len(cnames) == 0 || qtype == dns.TypeCNAME {
			m.Ns = append(m.Ns, s.soaFor(target))
			return
		}
		m.Answer = append(m.Answer, copyAs(cnames[:1], owner)...)
		target = strings.ToLower(cnames[0].(*dns.CNAME).Target)
	}
}

// node returns the record sets of name, or of the wildcard that stands for
// it: "*." + its closest existing ancestor, when name itself does not
// exist (RFC 4592 section 3.3.1). owner is the name the records are given.
func (s *Server) node(name string) (map[uint16][]dns.RR, string) {
	if rrsets, ok := s.records[name]; ok {
		return rrsets, name
	}
	if s.exists[name] {
		return nil, name
	}
	encloser := name
	for encloser != "." && !s.exists[encloser] {
		encloser = parent(encloser)
	}
	wild := "*." + encloser
	if encloser == "." {
		wild = "*."
	}
	if rrsets, ok := s.records[wild]; ok {
		return rrsets, name
	}
	return nil, name
}

// soaFor returns the SOA of the zone name is in: the closest SOA record at
// or above it, else the built-in root SOA.
func (s *Server) soaFor(name string) dns.RR {
	for n := name; ; n = parent(n) {
		if soas := s.records[n][dns.TypeSOA]; len(soas) > 0 {
			return dns.Copy(soas[0])
		}
		if n == "." {
			return dns.Copy(s.soa)
		}
	}
}

// copyAs returns copies of rrs owned by owner.
func copyAs(rrs []dns.RR, owner string) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		c := dns.Copy(rr)
		c.Header().Name = owner
		out[i] = c
	}
	return out
}
