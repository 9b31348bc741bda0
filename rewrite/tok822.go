package rewrite

import (
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/internal/tok822"
)

// This file is a parser for RFC 822 address lists, on the tokens of
// internal/tok822, that behaves like Postfix's tok822 module
// (tok822_parse(3)), because Postfix regenerates a rewritten header from
// its own parse tree: where tok822 splits, groups or moves tokens, a
// rewritten header shows it (comments moved after the address, "Name a@b"
// becoming "Name, a@b", missing commas added). Matching the parser is
// what makes the regenerated header byte-identical to Postfix's.

// Token types above the single-character operators: the scanner's
// (internal/tok822) and the parse tree's own.
const (
	tokAtom    = tok822.Atom
	tokQString = tok822.QString
	tokDomLit  = tok822.DomLit
	tokComment = tok822.Comment
)

const (
	tokStartGrp = tok822.Comment + 1 + iota // the ':' that starts a named group
	tokAddr                                 // an address: its tokens are the children
)

// tok is one token of a token list, or an address node holding a list.
type tok struct {
	typ        int
	text       string
	prev, next *tok
	head, tail *tok // children of a tokAddr
	owner      *tok // the tokAddr this token belongs to, nil at top level
}

// scanTokens splits external-form text into a token list, stopping after
// limit tokens when limit > 0 (header_address_token_limit): the rest of
// the text is dropped, as Postfix does. It never fails; unterminated
// quoted strings, comments and literals run to the end of the text.
func scanTokens(s string, limit int) (head, tail *tok) {
	tok822.ScanEach(s, limit, func(t tok822.Token) {
		n := &tok{typ: t.Type, text: t.Text}
		if head == nil {
			head = n
		} else {
			tail.next = n
			n.prev = tail
		}
		tail = n
	})
	return head, tail
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
