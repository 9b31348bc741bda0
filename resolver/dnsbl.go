package resolver

import (
	"net/netip"
	"strconv"
	"strings"
)

const hexDigits = "0123456789abcdef"

// ReverseName returns the labels DNS uses to look addr up in reverse, without
// a zone and without a trailing dot: the four octets of an IPv4 address in
// reverse order ("4.3.2.1" for 1.2.3.4), or the 32 nibbles of an IPv6
// address in reverse order, lower-case hex ("1.0.0.0. ... .8.b.d.0.1.0.0.2"
// for 2001:db8::1), as in RFC 1035 section 3.5 and RFC 3596 section 2.5. An
// IPv4-mapped IPv6 address (::ffff:1.2.3.4) is treated as the IPv4 address,
// which is what a dual-stack listener reports for an IPv4 client. An IPv6
// zone is ignored. The zero Addr gives "".
func ReverseName(addr netip.Addr) string {
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		a := addr.As4()
		b := make([]byte, 0, 15)
		for i := 3; i >= 0; i-- {
			b = strconv.AppendUint(b, uint64(a[i]), 10)
			if i > 0 {
				b = append(b, '.')
			}
		}
		return string(b)
	case addr.Is6():
		a := addr.As16()
		b := make([]byte, 0, 63)
		for i := 15; i >= 0; i-- {
			b = append(b, hexDigits[a[i]&0xf], '.', hexDigits[a[i]>>4])
			if i > 0 {
				b = append(b, '.')
			}
		}
		return string(b)
	}
	return ""
}

// DNSBLQuery returns the name to query in the DNS list zone for addr:
// ReverseName(addr) + "." + zone, without a trailing dot
// ("2.0.0.127.zen.example" for 127.0.0.2 and "zen.example"). Postfix's
// reject_rbl_client builds the same name and asks for its A records
// (postconf(5)); the TXT records of the same name give the reason. An empty
// zone gives ReverseName(addr); the zero Addr gives "".
func DNSBLQuery(addr netip.Addr, zone string) string {
	rev := ReverseName(addr)
	zone = strings.TrimSuffix(zone, ".")
	if rev == "" || zone == "" {
		return rev
	}
	return rev + "." + zone
}

// ptrName returns the in-addr.arpa or ip6.arpa name a PTR query for addr
// asks (RFC 1035 section 3.5, RFC 3596 section 2.5), "" for the zero Addr.
func ptrName(addr netip.Addr) string {
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		return ReverseName(addr) + ".in-addr.arpa"
	case addr.Is6():
		return ReverseName(addr) + ".ip6.arpa"
	}
	return ""
}
