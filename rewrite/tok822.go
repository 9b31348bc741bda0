package rewrite

import (
	"strings"

	"github.com/postkit-mail/postkit/address"
)

// This file is a tokenizer and parser for RFC 822 address lists that
// behaves like Postfix's tok822 module (tok822_parse(3)), because Postfix
// regenerates a rewritten header from its own parse tree: where tok822
// splits, groups or moves tokens, a rewritten header shows it (comments
// moved after the address, "Name a@b" becoming "Name, a@b", missing commas
// added). Matching the parser is what makes the regenerated header byte-
// identical to Postfix's.

// Token types above the single-character operators.
const (
	tokAtom     = 256 + iota // atom (text)
	tokQString               // quoted string (text without quotes and escapes)
	tokDomLit                // domain literal (text between brackets)
	tokComment               // comment, kept in external form with parentheses
	tokStartGrp              // the ':' that starts a named group
	tokAddr                  // an address: its tokens are the children
)

// opChars are tok822's single-character operators. '%' and '!' are
// included because not all the world is RFC 822.
const opChars = "|\"(),.:;<>@[]%!"

// tok is one token of a token list, or an address node holding a list.
type tok struct {
	typ        int
	text       string
	prev, next *tok
	head, tail *tok // children of a tokAddr
	owner      *tok // the tokAddr this token belongs to, nil at top level
}

func isOpChar(c byte) bool { return strings.IndexByte(opChars, c) >= 0 }

// isSpace is Postfix's IS_SPACE_TAB_CR_LF.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// scanTokens splits external-form text into a token list, stopping after
// limit tokens when limit > 0 (header_address_token_limit): the rest of
// the text is dropped, as Postfix does. It never fails; unterminated
// quoted strings, comments and literals run to the end of the text.
func scanTokens(s string, limit int) (head, tail *tok) {
	count := 0
	var b []byte
	for i := 0; i < len(s); {
		c := s[i]
		i++
		if isSpace(c) {
			continue
		}
		t := &tok{}
		switch {
		case c == '(':
			t.typ = tokComment
			t.text, i = scanComment(s, i)
		case c == '[':
			t.typ = tokDomLit
			b, i = collect(b[:0], s, i, ']')
			t.text = string(b)
		case c == '"':
			t.typ = tokQString
			b, i = collect(b[:0], s, i, '"')
			t.text = string(b)
		case c != '\\' && isOpChar(c):
			t.typ = int(c)
		default:
			t.typ = tokAtom
			i--
			b, i = collectAtom(b[:0], s, i)
			t.text = string(b)
			if atomNeedsQuote(t.text) {
				t.typ = tokQString
			}
		}
		if head == nil {
			head = t
		} else {
			tail.next = t
			t.prev = tail
		}
		tail = t
		count++
		if limit > 0 && count >= limit {
			break
		}
	}
	return head, tail
}

// collect gathers the text of a quoted string or domain literal up to the
// closing byte end, which is skipped. A backslash quotes the next byte.
// Whitespace inside becomes a space (Postfix's COLLECT).
func collect(b []byte, s string, i int, end byte) ([]byte, int) {
	for i < len(s) {
		c := s[i]
		if c == '\\' {
			i++
			if i >= len(s) {
				break
			}
			c = s[i]
		} else if c == end {
			i++ // skip the closing byte
			break
		}
		if isSpace(c) {
			c = ' '
		}
		b = append(b, c)
		i++
	}
	return b, i
}

// collectAtom gathers an atom: up to whitespace or an operator; a
// backslash quotes the next byte.
func collectAtom(b []byte, s string, i int) ([]byte, int) {
	for i < len(s) {
		c := s[i]
		if c == '\\' {
			i++
			if i >= len(s) {
				break
			}
			c = s[i]
		} else if isSpace(c) || isOpChar(c) {
			break
		}
		if isSpace(c) {
			c = ' '
		}
		b = append(b, c)
		i++
	}
	return b, i
}

// atomNeedsQuote: an atom that holds a space, a control character, an
// operator or a backslash (the last two only through backslash escapes)
// is a quoted string when written out; Postfix 3.7 counts the backslash
// among its operator characters here. 8-bit bytes are left alone.
func atomNeedsQuote(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c < 0x20 || c == 0x7f || c == '\\' || isOpChar(c) {
			return true
		}
	}
	return false
}

// scanComment reads a comment after its '(' and returns it in external
// form, parentheses included; comments nest, and a backslash keeps the
// next byte as it is.
func scanComment(s string, i int) (string, int) {
	start := i - 1
	level := 1
	for i < len(s) {
		c := s[i]
		i++
		switch c {
		case '(':
			level++
		case ')':
			level--
			if level == 0 {
				return s[start:i], i
			}
		case '\\':
			if i >= len(s) {
				return s[start:i], i
			}
			i++
		}
	}
	return s[start:i], i
}

// Parser states.
const (
	doWord  = 1 << 0 // a word may come here without starting a new address
	doGroup = 1 << 1 // inside a named group (after its ';')
)

// unlink removes t from its list and returns the token before it.
func unlink(t *tok) *tok {
	p := t.prev
	if t.prev != nil {
		t.prev.next = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	}
	t.prev, t.next = nil, nil
	return p
}

// insertBefore links t in front of at.
func insertBefore(at, t *tok) {
	t.prev = at.prev
	t.next = at
	if at.prev != nil {
		at.prev.next = t
	}
	at.prev = t
}

// insertAfter links t after at.
func insertAfter(at, t *tok) {
	t.next = at.next
	t.prev = at
	if at.next != nil {
		at.next.prev = t
	}
	at.next = t
}

// group moves the tokens strictly between left and right under a new
// address node placed between them, and, with comma, puts a ',' token
// right after left (the comma tok822 adds between addresses it finds
// without one). It returns left.
func group(left, right *tok, comma bool) *tok {
	if left == right || left.next == right {
		return left
	}
	first := left.next
	last := right.prev
	g := &tok{typ: tokAddr, head: first, tail: last}
	first.prev = nil
	last.next = nil
	for t := first; t != nil; t = t.next {
		t.owner = g
	}
	left.next = g
	g.prev = left
	g.next = right
	right.prev = g
	if comma {
		insertAfter(left, &tok{typ: ','})
	}
	return left
}

// parseList turns header text into tok822's parse tree: the top-level
// token list in which each address is a tokAddr node. The parse runs from
// right to left, as tok822 does, and never throws text away.
func parseList(s string, limit int) *tok {
	first, last := scanTokens(s, limit)
	if first == nil {
		return nil
	}
	head := &tok{} // sentinels, type 0
	tail := &tok{}
	head.next, first.prev = first, head
	last.next, tail.prev = tail, last

	state := doWord
	right := tail
	tp := tail.prev
	for tp.typ != 0 {
		switch {
		case tp.typ == tokComment: // comments are moved out of the way
			prev := unlink(tp)
			insertBefore(right, tp)
			right = tp
			tp = prev
			continue
		case tp.typ == ';': // right-hand side of a named group
			right = group(tp, right, true)
			state = doGroup | doWord
		case tp.typ == ':' && state&doGroup != 0:
			tp.typ = tokStartGrp
			group(tp, right, false)
			for tp.typ != 0 && tp.typ != ',' {
				tp = tp.prev
			}
			right = tp
			continue
		case tp.typ == '>': // right-hand side of <route>
			right = group(tp, right, true)
			for tp.typ != 0 && tp.typ != '<' {
				if tp.typ == tokComment {
					prev := unlink(tp)
					insertBefore(right, tp)
					right = tp
					tp = prev
					continue
				}
				tp = tp.prev
			}
			group(tp, right, false)
			for tp.typ != 0 && (tp.typ > 0xff || strings.IndexByte(">;,:", byte(tp.typ)) < 0) {
				tp = tp.prev
			}
			right = tp
			state |= doWord
			continue
		case tp.typ == tokAtom || tp.typ == tokQString || tp.typ == tokDomLit:
			if state&doWord == 0 {
				right = group(tp, right, true).next
			}
			state &^= doWord
		case tp.typ == ',':
			right = group(tp, right, false)
			state |= doWord
		default:
			state |= doWord
		}
		tp = tp.prev
	}
	group(tp, right, false)

	if head.next == tail {
		return nil
	}
	t := head.next
	t.prev = nil
	tail.prev.next = nil
	return t
}

// appendSpace says whether tok822 writes a space after t.
func appendSpace(t *tok) bool {
	n := t.next
	if n == nil || t.owner != nil {
		return false
	}
	if t.typ == ',' || t.typ == tokStartGrp || n.typ == '<' {
		return true
	}
	return nonOperator(t) && nonOperator(n)
}

func nonOperator(t *tok) bool {
	switch t.typ {
	case tokAtom, tokQString, tokComment, tokDomLit, tokAddr:
		return true
	}
	return false
}

// internalize writes a token list without quoting (tok822_internalize).
func internalize(b *strings.Builder, t *tok) {
	for ; t != nil; t = t.next {
		switch t.typ {
		case ',':
			b.WriteByte(',')
		case tokAddr:
			internalize(b, t.head)
		case tokAtom, tokQString, tokComment:
			b.WriteString(t.text)
		case tokDomLit:
			b.WriteByte('[')
			b.WriteString(t.text)
			b.WriteByte(']')
		case tokStartGrp:
			b.WriteByte(':')
		default:
			b.WriteByte(byte(t.typ))
		}
		if appendSpace(t) {
			b.WriteByte(' ')
		}
	}
}

// Flags of externalize.
const (
	extLine  = 1 << iota // a newline after each comma (header regeneration)
	extTrunc             // strip excess non-address text (Sendmail CA-2003-07)
)

// maxNonAddr is how much non-address text one list element may carry
// before Postfix strips it to <address> (tok822_externalize).
const maxNonAddr = 250

// externalize writes a token list in external form (tok822_externalize):
// each address is internalized and its local part re-quoted, quoted
// strings and literals get their quotes and escapes back.
func externalize(b *strings.Builder, t *tok, flags int) {
	start := b.Len()
	var addr *tok
	addrLen := 0
	enforce := func() {
		if addr != nil && b.Len()-addrLen > start+maxNonAddr {
			s := b.String()[:start]
			b.Reset()
			b.WriteString(s)
			b.WriteByte('<')
			if addr.typ == tokAddr {
				var tmp strings.Builder
				internalize(&tmp, addr.head)
				b.WriteString(address.Quote(tmp.String()))
			}
			b.WriteByte('>')
		}
	}
	for ; t != nil; t = t.next {
		switch t.typ {
		case ',':
			if flags&extTrunc != 0 {
				enforce()
			}
			b.WriteByte(',')
			if flags&extLine != 0 {
				b.WriteByte('\n')
			} else {
				b.WriteByte(' ')
			}
			if flags&extTrunc != 0 {
				start, addr, addrLen = b.Len(), nil, 0
			}
			continue
		case tokAddr:
			addr = t
			var tmp strings.Builder
			internalize(&tmp, t.head)
			n := b.Len()
			b.WriteString(address.Quote(tmp.String()))
			addrLen = b.Len() - n
		case tokAtom, tokComment:
			b.WriteString(t.text)
		case tokQString:
			b.WriteByte('"')
			copyQuoted(b, t.text, "\"\\\r\n")
			b.WriteByte('"')
		case tokDomLit:
			b.WriteByte('[')
			copyQuoted(b, t.text, "\\\r\n")
			b.WriteByte(']')
		case tokStartGrp:
			b.WriteByte(':')
		case '<':
			if t.next != nil && t.next.typ == '>' {
				addr = t
				addrLen = 0
			}
			b.WriteByte('<')
		default:
			b.WriteByte(byte(t.typ))
		}
		if appendSpace(t) {
			b.WriteByte(' ')
		}
	}
	if flags&extTrunc != 0 {
		enforce()
	}
}

func copyQuoted(b *strings.Builder, s, set string) {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(set, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
}

// externalizeAddr renders the tokens of one address (not the address
// node) in external form, as cleanup does before asking trivial-rewrite
// or a table about it.
func externalizeAddr(t *tok) string {
	var b strings.Builder
	externalize(&b, t, 0)
	return b.String()
}

// internalizeList renders a token list in internal form.
func internalizeList(t *tok) string {
	var b strings.Builder
	internalize(&b, t)
	return b.String()
}
