package address

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// Limits from RFC 1035 section 2.3.4 that Postfix's valid_hostname enforces.
const (
	maxLabelLen    = 63
	maxHostnameLen = 255
)

// ValidHostname checks a domain name in ASCII (A-label) form the way
// Postfix's valid_hostname does: labels of letters, digits, '-' and '_',
// separated by single dots; no label longer than 63 bytes, no '-' at either
// end of a label, at most 255 bytes, and not made of digits and dots only
// (that would be an IP address, see ParseLiteral; "host.123" is valid, as
// Postfix 3.7's smtpd shows). A single trailing dot is not accepted here;
// trivial-rewrite removes it first (§6.1 of the spec).
func ValidHostname(name string) error {
	if name == "" {
		return errors.New("empty hostname")
	}
	if len(name) > maxHostnameLen {
		return fmt.Errorf("hostname %.40q...: longer than %d bytes", name, maxHostnameLen)
	}
	labelLen := 0
	nonNumeric := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case isAlnum(c) || c == '_':
			labelLen++
			if labelLen > maxLabelLen {
				return fmt.Errorf("hostname %q: label longer than %d bytes", name, maxLabelLen)
			}
			if !isDigit(c) {
				nonNumeric = true
			}
		case c == '-':
			if labelLen == 0 || i+1 == len(name) || name[i+1] == '.' {
				return fmt.Errorf("hostname %q: misplaced hyphen", name)
			}
			labelLen++
			nonNumeric = true
		case c == '.':
			if labelLen == 0 || i+1 == len(name) {
				return fmt.Errorf("hostname %q: misplaced dot", name)
			}
			labelLen = 0
		default:
			return fmt.Errorf("hostname %q: invalid character %q", name, rune(c))
		}
	}
	if !nonNumeric {
		return fmt.Errorf("hostname %q: numeric hostname (an IP address must be written as [address])", name)
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlnum(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// ParseLiteral parses an RFC 5321 section 4.1.3 address literal:
// "[192.0.2.1]" or "[IPv6:2001:db8::1]" (the "IPv6:" tag is
// case-insensitive). An IPv6 address without the tag, or an IPv4 address
// with it, is an error, as are zones and anything that is not an address.
func ParseLiteral(s string) (netip.Addr, error) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return netip.Addr{}, fmt.Errorf("address literal %q: not enclosed in [ ]", s)
	}
	inner := s[1 : len(s)-1]
	if len(inner) >= 5 && strings.EqualFold(inner[:5], "IPv6:") {
		a, err := netip.ParseAddr(inner[5:])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, fmt.Errorf("address literal %q: bad IPv6 address", s)
		}
		return a, nil
	}
	a, err := netip.ParseAddr(inner)
	if err != nil || !a.Is4() {
		if err == nil && a.Is6() {
			return netip.Addr{}, fmt.Errorf("address literal %q: IPv6 address needs the IPv6: tag", s)
		}
		return netip.Addr{}, fmt.Errorf("address literal %q: bad IPv4 address", s)
	}
	return a, nil
}

// FormatLiteral renders ip as an address literal: "[192.0.2.1]" or
// "[IPv6:2001:db8::1]".
func FormatLiteral(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return "[" + ip.String() + "]"
	}
	return "[IPv6:" + ip.String() + "]"
}

// IsLiteral reports whether a domain is written as an address literal
// ("[...]"), whatever it contains.
func IsLiteral(domain string) bool {
	return strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]")
}

// idnaProfile converts between U-labels and A-labels for lookups, as
// Postfix's midna_domain does with UTS #46 non-transitional processing.
// Underscores stay allowed because valid_hostname allows them.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.StrictDomainName(false),
)

// ToASCII converts a domain with U-labels to A-labels ("bücher.example" →
// "xn--bcher-kva.example"), lower-cased by the UTS #46 mapping. Address
// literals and pure-ASCII names are returned unchanged.
func ToASCII(domain string) (string, error) {
	if isASCII(domain) || IsLiteral(domain) {
		return domain, nil
	}
	a, err := idnaProfile.ToASCII(domain)
	if err != nil {
		return "", fmt.Errorf("domain %q: IDNA conversion to ASCII: %w", domain, err)
	}
	return a, nil
}

// ToUnicode converts A-labels to U-labels ("xn--bcher-kva.example" →
// "bücher.example"). Names without "xn--" labels are returned unchanged.
func ToUnicode(domain string) (string, error) {
	if !strings.Contains(strings.ToLower(domain), "xn--") {
		return domain, nil
	}
	u, err := idnaProfile.ToUnicode(domain)
	if err != nil {
		return "", fmt.Errorf("domain %q: IDNA conversion to Unicode: %w", domain, err)
	}
	return u, nil
}

// ValidDomain checks the domain part of an address: an address literal
// (ParseLiteral) or a hostname (ValidHostname), where a name with U-labels
// is checked after conversion to A-labels.
func ValidDomain(domain string) error {
	if strings.HasPrefix(domain, "[") {
		_, err := ParseLiteral(domain)
		return err
	}
	a, err := ToASCII(domain)
	if err != nil {
		return err
	}
	return ValidHostname(a)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// NeedsSMTPUTF8 reports whether sending a to a server needs the SMTPUTF8
// extension (RFC 6531): true when the local part holds non-ASCII text, or
// when the domain holds non-ASCII text that cannot be converted to A-labels.
// A non-ASCII domain that converts is sent as A-labels, as Postfix's smtp(8)
// does for servers without SMTPUTF8.
func NeedsSMTPUTF8(a Address) bool {
	if !isASCII(a.Local) {
		return true
	}
	if isASCII(a.Domain) {
		return false
	}
	_, err := ToASCII(a.Domain)
	return err != nil
}

// HasNonASCII reports whether the address contains any byte >= 0x80 (the
// test Postfix's smtpd makes when a client did not announce SMTPUTF8).
func HasNonASCII(a Address) bool { return !isASCII(a.Local) || !isASCII(a.Domain) }
