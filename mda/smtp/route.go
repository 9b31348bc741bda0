package smtp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/postkit-mail/postkit/resolver"
)

// dest is one destination of a nexthop (spec §8.6, "Destination
// syntax"): a domain for an MX lookup, a [host] without one, an address,
// or an LMTP unix socket.
type dest struct {
	raw  string // as written: the key for smtp_tls_policy_maps and the cache
	host string // domain, host name or address text, without brackets
	port int
	mx   bool   // look up MX records
	unix string // LMTP unix-domain socket path
}

// parseDests splits a nexthop list (commas or white space, Postfix 3.5+)
// into destinations.
func parseDests(nexthop string, lmtp bool, defPort int) ([]dest, error) {
	var out []dest
	for _, f := range strings.FieldsFunc(nexthop, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		d, err := parseDest(f, lmtp, defPort)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func parseDest(s string, lmtp bool, defPort int) (dest, error) {
	d := dest{raw: s, port: defPort}
	rest := s
	if lmtp {
		switch {
		case strings.HasPrefix(s, "unix:"):
			d.unix = strings.TrimPrefix(s, "unix:")
			if d.unix == "" {
				return d, fmt.Errorf("bad LMTP destination %q", s)
			}
			return d, nil
		case strings.HasPrefix(s, "inet:"):
			rest = strings.TrimPrefix(s, "inet:")
		}
	} else if strings.HasPrefix(s, "inet:") {
		rest = strings.TrimPrefix(s, "inet:")
	}
	port := ""
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return d, fmt.Errorf("bad destination %q: missing ]", s)
		}
		d.host = rest[1:end]
		if len(d.host) > 5 && strings.EqualFold(d.host[:5], "ipv6:") {
			d.host = d.host[5:]
		}
		after := rest[end+1:]
		if after != "" {
			if after[0] != ':' {
				return d, fmt.Errorf("bad destination %q", s)
			}
			port = after[1:]
		}
	} else {
		d.host = rest
		d.mx = !lmtp
		if strings.Count(rest, ":") == 1 {
			d.host, port, _ = strings.Cut(rest, ":")
		}
		if _, err := netip.ParseAddr(d.host); err == nil {
			d.mx = false
		}
	}
	d.host = strings.ToLower(strings.TrimSuffix(d.host, "."))
	if d.host == "" {
		return d, fmt.Errorf("bad destination %q: no host", s)
	}
	if _, err := netip.ParseAddr(d.host); err != nil && !validHostname(d.host) {
		return d, fmt.Errorf("bad destination %q: bad host name %q", s, d.host)
	}
	if port != "" {
		p, err := servicePort(port)
		if err != nil {
			return d, fmt.Errorf("bad destination %q: %w", s, err)
		}
		d.port = p
	}
	return d, nil
}

// validHostname accepts letters, digits, '-', '_' and non-empty labels
// separated by dots (Postfix's valid_hostname, without its length limits).
func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// target is one address to try.
type target struct {
	host string     // the host name (MX target) or address text
	addr netip.Addr // zero for unix
	port int
	unix string
	pref int
}

// relay renders the target as Postfix's relay= field: host[addr]:port,
// or myhostname[path] for a unix socket.
func (t target) relay(myhostname string) string {
	if t.unix != "" {
		return myhostname + "[" + t.unix + "]"
	}
	return t.host + "[" + t.addr.String() + "]:" + strconv.Itoa(t.port)
}

// site is host[addr] as Postfix names a server in reasons.
func (t target) site(myhostname string) string {
	if t.unix != "" {
		return myhostname + "[" + t.unix + "]"
	}
	return t.host + "[" + t.addr.String() + "]"
}

// failure is why recipients were not delivered at some step: a DSN, the
// reason text, and whether the next address may be tried.
type failure struct {
	dsn    string
	reason string
	// site: a failure of the destination (negative concurrency feedback).
	site bool
	// relay is the server that answered (relay=), "" for none.
	relay string
	// stop: the failure is final for the whole request (a hard DNS
	// answer, a loop): no further address or destination is tried.
	stop bool
}

func (f *failure) hard() bool { return strings.HasPrefix(f.dsn, "5") }

// softDSN forces a DSN into class 4 (a 5xx that must only defer).
func softDSN(dsn string) string {
	if strings.HasPrefix(dsn, "5") {
		return "4" + dsn[1:]
	}
	return dsn
}

// dnsFailure words a failed lookup as Postfix's smtp_addr.c does.
func dnsFailure(name, qtype string, err error) *failure {
	switch {
	case resolver.IsTemporary(err):
		return &failure{dsn: "4.4.3", reason: fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=%s: Host not found, try again", name, qtype)}
	case resolver.IsNXDomain(err):
		return &failure{dsn: "5.4.4", reason: fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=%s: Host not found", name, qtype)}
	case resolver.IsNotFound(err):
		return &failure{dsn: "5.4.4", reason: fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=%s: Host found but no data record of requested type", name, qtype)}
	}
	return &failure{dsn: "4.4.3", reason: fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=%s: %v", name, qtype, err)}
}

// hostAddrs looks up the A and/or AAAA records of name, per
// inet_protocols, shuffled unless smtp_randomize_addresses = no.
func (a *Agent) hostAddrs(ctx context.Context, name string) ([]netip.Addr, *failure) {
	var out []netip.Addr
	var fails []*failure
	lookup := func(qtype string, f func(context.Context, string) ([]netip.Addr, error)) {
		addrs, err := f(ctx, name)
		if err != nil {
			fails = append(fails, dnsFailure(name, qtype, err))
		}
		out = append(out, addrs...)
	}
	if a.cfg.IPv4 {
		lookup("A", a.res.LookupA)
	}
	if a.cfg.IPv6 {
		lookup("AAAA", a.res.LookupAAAA)
	}
	if len(out) == 0 {
		// A temporary failure of either lookup makes the whole one
		// temporary.
		for _, f := range fails {
			if strings.HasPrefix(f.dsn, "4") {
				return nil, f
			}
		}
		if len(fails) > 0 {
			return nil, fails[0]
		}
		return nil, &failure{dsn: "5.4.4", reason: fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=A: Host found but no data record of requested type", name)}
	}
	if !a.cfg.NoRandomize {
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	return out, nil
}

// targets resolves a destination into the addresses to try, in order
// (spec §8.6 "MX procedure").
func (a *Agent) targets(ctx context.Context, d dest) ([]target, *failure) {
	if d.unix != "" {
		return []target{{unix: d.unix}}, nil
	}
	if addr, err := netip.ParseAddr(d.host); err == nil {
		return []target{{host: addr.String(), addr: addr.Unmap(), port: d.port}}, nil
	}
	if !d.mx {
		addrs, fail := a.hostAddrs(ctx, d.host)
		if fail != nil {
			return nil, fail
		}
		var out []target
		for _, ad := range addrs {
			out = append(out, target{host: d.host, addr: ad.Unmap(), port: d.port})
		}
		a.preferFamily(out)
		return a.limit(out), nil
	}
	mxs, err := a.res.LookupMX(ctx, d.host)
	switch {
	case err == nil && len(mxs) == 1 && mxs[0].Host == "":
		// RFC 7505 null MX: no A/AAAA fallback.
		return nil, &failure{dsn: "5.1.0", reason: fmt.Sprintf("Domain %s does not accept mail (nullMX)", d.host), stop: true}
	case err == nil && len(mxs) > 0:
	case err != nil && resolver.IsNotFound(err), err == nil, a.cfg.IgnoreMXLookupError:
		// No MX records: the domain itself is the one mail exchanger, and
		// its address lookup speaks for itself.
		return a.implicitMX(ctx, d)
	default:
		return nil, dnsFailure(d.host, "MX", err)
	}
	// Equal preferences in random order: shuffle, then a stable sort.
	if !a.cfg.NoRandomize {
		rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	}
	slices.SortStableFunc(mxs, func(x, y resolver.MX) int { return int(x.Pref) - int(y.Pref) })

	var out []target
	var tempFail *failure
	for _, mx := range mxs {
		if mx.Host == "" {
			continue
		}
		addrs, fail := a.hostAddrs(ctx, mx.Host)
		if fail != nil {
			if strings.HasPrefix(fail.dsn, "4") {
				tempFail = fail
			}
			continue
		}
		for _, ad := range addrs {
			out = append(out, target{host: mx.Host, addr: ad.Unmap(), port: d.port, pref: int(mx.Pref)})
		}
	}
	if len(out) == 0 {
		if tempFail != nil {
			return nil, tempFail
		}
		dsn, stop := "5.4.4", true
		if a.cfg.DeferIfNoMXAddress {
			dsn, stop = "4.4.4", false
		}
		return nil, &failure{dsn: dsn, reason: fmt.Sprintf("no MX host for %s has a valid address record", d.host), stop: stop}
	}
	// Loop detection: drop our own address and everything of equal or
	// worse preference.
	for i, t := range out {
		if !a.loopDetect(d.port) || !slices.Contains(a.cfg.OwnAddrs, t.addr) {
			continue
		}
		if i == 0 || out[0].pref == t.pref {
			return nil, &failure{dsn: "5.4.6", reason: fmt.Sprintf("mail for %s loops back to myself", d.host), stop: true}
		}
		kept := out[:0]
		for _, x := range out {
			if x.pref < t.pref {
				kept = append(kept, x)
			}
		}
		out = kept
		break
	}
	if len(out) == 0 {
		return nil, &failure{dsn: "4.4.4", reason: fmt.Sprintf("unable to find primary relay for %s", d.host)}
	}
	a.preferFamily(out)
	return a.limit(out), nil
}

// implicitMX is the A/AAAA fallback for a domain without MX records
// (RFC 5321 5.1).
func (a *Agent) implicitMX(ctx context.Context, d dest) ([]target, *failure) {
	addrs, fail := a.hostAddrs(ctx, d.host)
	if fail != nil {
		return nil, fail
	}
	var out []target
	for _, ad := range addrs {
		if a.loopDetect(d.port) && slices.Contains(a.cfg.OwnAddrs, ad.Unmap()) {
			return nil, &failure{dsn: "5.4.6", reason: fmt.Sprintf("mail for %s loops back to myself", d.host), stop: true}
		}
		out = append(out, target{host: d.host, addr: ad.Unmap(), port: d.port})
	}
	a.preferFamily(out)
	return a.limit(out), nil
}

// preferFamily applies smtp_address_preference: among addresses of equal
// MX preference, the preferred family comes first (a stable sort, so the
// shuffle within each family stays).
func (a *Agent) preferFamily(t []target) {
	want4 := a.cfg.AddressPreference == "ipv4"
	if !want4 && a.cfg.AddressPreference != "ipv6" {
		return
	}
	rank := func(x target) int {
		if x.addr.Is4() == want4 {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(t, func(x, y target) int {
		if x.pref != y.pref {
			return x.pref - y.pref
		}
		return rank(x) - rank(y)
	})
}

// limit applies smtp_mx_address_limit.
func (a *Agent) limit(t []target) []target {
	if n := a.cfg.MXAddressLimit; n > 0 && len(t) > n {
		return t[:n]
	}
	return t
}

// loopDetect reports whether mail-loop detection applies to a server on
// port: as in Postfix's smtp(8) (SMTP_MISC_FLAG_LOOP_DETECT), only to
// port 25, so that a content filter or a second instance on another port
// of this host (relayhost = [127.0.0.1]:10025) is not taken for a loop.
func (a *Agent) loopDetect(port int) bool { return !a.cfg.LMTP && port == a.loopPort }
