package address

import "strings"

// NeedsQuoting reports whether a local part (internal form) must be written
// as a quoted string in external form. Following Postfix's quote_822_local,
// a local part can stay bare only when it is a non-empty sequence of atoms
// separated by single dots (RFC 5322 section 3.2.3 dot-atom, without
// obsolete forms): no leading, trailing or doubled dot, no space, no control
// character, and none of ( ) < > @ , ; : \ " [ ]. Bytes >= 0x80 do not force
// quoting (Postfix treats 8-bit text as clean, which is what SMTPUTF8 needs).
func NeedsQuoting(local string) bool {
	if local == "" || local[0] == '.' || local[len(local)-1] == '.' {
		return true
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c == '.' && i+1 < len(local) && local[i+1] == '.':
			return true
		case c == ' ' || c < 0x20 || c == 0x7f:
			return true
		case strings.IndexByte(`()<>@,;:\"[]`, c) >= 0:
			return true
		}
	}
	return false
}

// quoteInto appends local as a quoted string: in double quotes, with a
// backslash before '"', '\' and CR, the characters that RFC 5322 section
// 3.2.4 does not allow bare inside a quoted string.
func quoteInto(b *strings.Builder, local string) {
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c == '"' || c == '\\' || c == '\r' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
}

// QuoteLocal converts a bare local part from internal to external form. An
// empty local part becomes `""`.
func QuoteLocal(local string) string {
	if !NeedsQuoting(local) {
		return local
	}
	var b strings.Builder
	b.Grow(len(local) + 4)
	quoteInto(&b, local)
	return b.String()
}

// Quote converts an address from internal to external form (Postfix's
// quote_822_local). The local part is everything before the last '@' (after
// an RFC 5321 source route "@a,@b:" prefix, which is kept as it is); the
// domain is copied unchanged. Examples: `a b@x` → `"a b"@x`, `a@b@x` →
// `"a@b"@x`, `joe@x` → `joe@x`.
func Quote(addr string) string {
	start := 0
	if strings.HasPrefix(addr, "@") {
		if c := strings.IndexByte(addr, ':'); c >= 0 {
			start = c + 1
		}
	}
	rest := addr[start:]
	end := strings.LastIndexByte(rest, '@')
	if end < 0 {
		end = len(rest)
	}
	local := rest[:end]
	if !NeedsQuoting(local) {
		return addr
	}
	var b strings.Builder
	b.Grow(len(addr) + 4)
	b.WriteString(addr[:start])
	quoteInto(&b, local)
	b.WriteString(rest[end:])
	return b.String()
}

// Unquote converts an address from external to internal form (Postfix's
// unquote_822_local): double quotes are removed and a backslash escapes the
// next character, up to the last '@' that is not inside quotes; the domain
// after that '@' and a source-route prefix are copied unchanged. Examples:
// `"a b"@x` → `a b@x`, `"a@b"@x` → `a@b@x`.
func Unquote(addr string) string {
	if strings.IndexByte(addr, '"') < 0 && strings.IndexByte(addr, '\\') < 0 {
		return addr
	}
	var b strings.Builder
	b.Grow(len(addr))
	start := 0
	if strings.HasPrefix(addr, "@") {
		if c := strings.IndexByte(addr, ':'); c >= 0 {
			start = c + 1
			b.WriteString(addr[:start])
		}
	}
	inQuote := false
	atDst, atSrc := -1, -1
	for i := start; i < len(addr); i++ {
		c := addr[i]
		switch c {
		case '"':
			inQuote = !inQuote
			continue
		case '@':
			if !inQuote {
				atDst, atSrc = b.Len(), i
			}
		case '\\':
			if i+1 >= len(addr) {
				continue
			}
			i++
			c = addr[i]
		}
		b.WriteByte(c)
	}
	if atDst < 0 {
		return b.String()
	}
	return b.String()[:atDst] + addr[atSrc:]
}
