package resolver

import (
	"strings"
)

// Limits from RFC 1035 section 2.3.4: 63 octets a label, 255 octets a name
// in wire form, which leaves 253 characters in text without the final dot.
const (
	maxLabelLen = 63
	maxNameLen  = 253
)

// canonicalName checks name the way Postfix's valid_hostname does before
// dns_lookup sends anything ("the Linux resolver misbehaves when given an
// invalid domain name"), and returns it lower case without the trailing
// dot. A name is valid when it is 1 to 253 characters long, its labels are
// 1 to 63 characters of letters, digits, '_' and '-', no label starts or
// ends with '-', and it is not all digits and dots (an IPv4 address is not a
// host name). Anything else would need RFC 1035 escapes to be sent, and no
// mail host has such a name, so it gets "not found" without a query.
func canonicalName(name string) (string, bool) {
	name = strings.TrimSuffix(name, ".")
	if len(name) == 0 || len(name) > maxNameLen {
		return "", false
	}
	label := 0
	numeric := true
	upper := false
	for i := 0; i < len(name); i++ {
		switch charClass[name[i]] {
		case cLetter:
			numeric = false
		case cUpper:
			numeric = false
			upper = true
		case cDigit:
		case cHyphen:
			if label == 0 || i+1 == len(name) || name[i+1] == '.' {
				return "", false
			}
			numeric = false
		case cDot:
			if label == 0 {
				return "", false
			}
			label = 0
			continue
		default:
			return "", false
		}
		if label++; label > maxLabelLen {
			return "", false
		}
	}
	if label == 0 || numeric {
		return "", false
	}
	if upper {
		name = strings.ToLower(name)
	}
	return name, true
}

// Character classes for canonicalName; a table keeps the check of a name
// on the cache-hit path cheap.
const (
	cInvalid = iota
	cLetter  // a-z and '_'
	cUpper   // A-Z
	cDigit
	cHyphen
	cDot
)

var charClass = func() (t [256]byte) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = cLetter
		t[c-'a'+'A'] = cUpper
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = cDigit
	}
	t['_'] = cLetter
	t['-'] = cHyphen
	t['.'] = cDot
	return t
}()

// hostName turns a domain name from an answer (MX exchange, PTR, NS target)
// into the form Resolver returns: lower case, without the trailing dot.
// miekg/dns gives it in presentation format, so a byte that is not
// printable ASCII stays escaped as \DDD; no valid host name has one.
func hostName(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}

// unescapeTXT undoes the presentation-format escaping miekg/dns applies to
// TXT character strings when it unpacks them (\" \\ and \DDD for bytes
// outside printable ASCII, RFC 1035 section 5.1), so callers see the bytes
// that were on the wire.
func unescapeTXT(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if v <= 255 {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
