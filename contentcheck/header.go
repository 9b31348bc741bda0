package contentcheck

import (
	"bytes"
	"strings"
)

// Header is one logical header: its first line and its continuation lines.
type Header struct {
	Name string // as received, without the colon (and without blanks before it)
	Raw  []byte // the whole logical header as received: every line with its CRLF

	key string // the lookup key, when the Walker made it
}

// Value is the text after the colon with the line breaks of folding
// removed (each CRLF deleted, the whitespace after it kept, RFC 5322
// 2.2.3 unfolding) and leading and trailing whitespace trimmed.
func (h Header) Value() string {
	i := bytes.IndexByte(h.Raw, ':')
	if i < 0 {
		return ""
	}
	v := h.Raw[i+1:]
	var b strings.Builder
	b.Grow(len(v))
	for _, c := range v {
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
		}
	}
	return strings.Trim(b.String(), " \t")
}

// Key is the string Postfix looks up in header_checks for this header: the
// name, a colon (blanks before the colon removed, obsolete RFC 822 syntax),
// the rest of the first line and every continuation line joined with "\n",
// without the final line break. A stray CR inside a line counts as a space
// (cleanup_replace_stray_cr_lf).
func (h Header) Key() string {
	if h.key != "" {
		return h.key
	}
	return string(headerKey(h.Raw))
}

// headerKey builds the key of a raw logical header.
func headerKey(raw []byte) []byte {
	var key []byte
	first := true
	for len(raw) > 0 {
		line := raw
		next := len(raw)
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, next = raw[:i], i+1
		}
		raw = raw[next:]
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if first {
			first = false
			if n := isHeader(line); n > 0 {
				key = append(key, line[:n]...)
				rest := line[n:]
				for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
					rest = rest[1:]
				}
				key = appendMasked(key, rest)
				continue
			}
			key = appendMasked(key, line)
			continue
		}
		key = append(key, '\n')
		key = appendMasked(key, line)
	}
	return key
}

// appendMasked appends s with stray CR and LF bytes replaced by spaces.
func appendMasked(dst, s []byte) []byte {
	n := len(dst)
	dst = append(dst, s...)
	for i := n; i < len(dst); i++ {
		if dst[i] == '\r' || dst[i] == '\n' {
			dst[i] = ' '
		}
	}
	return dst
}

// isHeader returns the length of the header name at the start of s when s
// starts a header ("name:" or the obsolete "name :"), else 0. A name is
// one or more printable ASCII characters other than space and colon
// (Postfix's is_header_buf).
func isHeader(s []byte) int {
	n := 0
	space := false
	for _, c := range s {
		switch {
		case c == ':':
			return n
		case c == ' ' || c == '\t':
			if n == 0 {
				return 0
			}
			space = true
		case c < 0x20 || c >= 0x7f:
			return 0
		default:
			if space {
				return 0
			}
			n++
		}
	}
	return 0
}

// The header names Postfix handles as MIME headers (header_opts.c
// HDR_OPT_MIME): they go to mime_header_checks wherever they appear.
const (
	hdrOther = iota
	hdrContentType
	hdrContentTransferEncoding
	hdrMIMEOther
)

// headerType classifies a header name, ignoring case.
func headerType(name []byte) int {
	switch len(name) {
	case 10:
		if asciiEqualFold(name, "content-id") {
			return hdrMIMEOther
		}
	case 12:
		if asciiEqualFold(name, "content-type") {
			return hdrContentType
		}
		if asciiEqualFold(name, "mime-version") {
			return hdrMIMEOther
		}
	case 19:
		if asciiEqualFold(name, "content-description") || asciiEqualFold(name, "content-disposition") {
			return hdrMIMEOther
		}
	case 25:
		if asciiEqualFold(name, "content-transfer-encoding") {
			return hdrContentTransferEncoding
		}
	}
	return hdrOther
}

// asciiEqualFold compares b with the lower-case ASCII word s.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
