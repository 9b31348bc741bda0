// Package resolver is postkit's one way to ask DNS: MX, A/AAAA, PTR, TXT
// and NS queries, and the DNSBL names built from them, on
// github.com/miekg/dns.
//
// Everything else in postkit that needs DNS (MX routing, the smtpd
// restrictions, DNSBLs) takes the Resolver interface, so a test or an
// application can hand it any implementation. Client is the real one: it
// reads its servers from /etc/resolv.conf or from code, retries over UDP,
// falls back to TCP when an answer is truncated, and keeps a TTL-respecting,
// size-bounded cache. The dnstest package beside it runs an authoritative
// server in-process on loopback for tests.
//
// Errors tell "does not exist" from "try again", because Postfix answers 5xx
// for one and 4xx for the other: both are *net.DNSError values, with
// IsNotFound set for NXDOMAIN and NODATA and IsTemporary set for SERVFAIL,
// REFUSED and timeouts. IsNotFound and IsTemporary test them.
package resolver

import (
	"context"
	"net/netip"
)

// MX is one mail exchanger record.
type MX struct {
	Host string // target host name, lower case, without the trailing dot; "" for a null MX (RFC 7505)
	Pref uint16 // preference; lower is preferred
}

// Resolver answers the DNS queries a mail system makes. Names are given and
// returned without a trailing dot (one is accepted). A name that does not
// exist, or has no records of the type asked, returns an error for which
// IsNotFound is true; a failure that may pass returns one for which
// IsTemporary is true. Implementations are safe for concurrent use.
type Resolver interface {
	// LookupMX returns the MX records of name in DNS order (callers sort
	// by preference). A null MX comes back as one record with Host "".
	LookupMX(ctx context.Context, name string) ([]MX, error)
	// LookupA returns the IPv4 addresses of name.
	LookupA(ctx context.Context, name string) ([]netip.Addr, error)
	// LookupAAAA returns the IPv6 addresses of name.
	LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error)
	// LookupPTR returns the names that addr's reverse name points to.
	LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error)
	// LookupTXT returns the TXT records of name, the character strings of
	// each record joined without separator.
	LookupTXT(ctx context.Context, name string) ([]string, error)
	// LookupNS returns the name servers of name.
	LookupNS(ctx context.Context, name string) ([]string, error)
}
