// Package tok822 is the RFC 822 address tokenizer that Postfix's address
// rewriting and resolving work on (tok822(3)), and the two steps of
// trivial-rewrite(8) that operate on its tokens: the canonical-form
// rewrite of the local context (rewrite_tree) and the resolver's loop
// that strips local domains and follows the routing behind them
// (resolve_addr). Packages route, restrictions and rewrite share it, so
// that an address is split, rewritten and resolved the same way for the
// queue manager, the SMTP server and cleanup.
//
// Addresses are scanned in external (quoted) form and written back in
// internal form (no quotes, a space between adjacent words), as Postfix
// does, so that routing operators inside a quoted local part stay hidden
// except where resolve_dequoted_address asks for them.
//
// Not built: tok822_parse's address-list tree (package rewrite keeps its
// own, it regenerates headers from it) and the "remote" rewriting context
// (the caller passes the remote domain as Origin and Domain).
package tok822

import "strings"

// Token types other than the single-character operators, which are the
// operator byte itself ('@', '.', '%', ...).
const (
	Atom    = 256 + iota // text
	QString              // quoted string: the text without quotes and escapes
	DomLit               // domain literal: the text between the brackets
	Comment              // comment, kept in external form with its parentheses
)

// Token is one RFC 822 token; '%', '!' and '|' are operators too.
type Token struct {
	Type int
	Text string
	// Glue: Internalize writes no space before this token. Postfix
	// writes the local part of "!user" (a bang path with an empty site)
	// without the spaces it puts between other adjacent words (seen with
	// Postfix 3.7: "!a b@x" resolves to "ab@x").
	Glue bool
}

// opChars are the single-character operators: "|%!" and the RFC 822
// specials.
const opChars = "|%!()<>@,;:\\\".[]"

// IsOperator reports whether c is one of tok822's operator characters
// (the RFC 822 specials and "|%!").
func IsOperator(c byte) bool { return strings.IndexByte(opChars, c) >= 0 }

// IsSpace is Postfix's IS_SPACE_TAB_CR_LF.
func IsSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// Scan splits an address or address list in external form into tokens
// (tok822_scan). It never fails: an unterminated quoted string, comment
// or literal runs to the end of s.
func Scan(s string) []Token { return ScanLimit(s, 0) }

// ScanLimit is Scan stopping after limit tokens when limit > 0 (the rest
// of s is dropped, as header_address_token_limit does).
func ScanLimit(s string, limit int) []Token {
	toks := make([]Token, 0, 8)
	ScanEach(s, limit, func(t Token) { toks = append(toks, t) })
	return toks
}

// ScanEach is ScanLimit handing each token to yield instead of building a
// slice (for a caller that keeps tokens in its own structure).
func ScanEach(s string, limit int, yield func(Token)) {
	var b []byte
	n := 0
	for i := 0; i < len(s); {
		if limit > 0 && n >= limit {
			break
		}
		c := s[i]
		i++
		var t Token
		switch {
		case IsSpace(c):
			continue
		case c == '(':
			t.Type = Comment
			t.Text, i = scanComment(s, i)
		case c == '[':
			b, i = collect(b[:0], s, i, ']', false)
			t = Token{Type: DomLit, Text: string(b)}
		case c == '"':
			b, i = collect(b[:0], s, i, '"', false)
			t = Token{Type: QString, Text: string(b)}
		case c != '\\' && IsOperator(c):
			t.Type = int(c)
		default:
			b, i = collect(b[:0], s, i-1, 0, true)
			t = Token{Type: Atom, Text: string(b)}
			if atomNeedsQuote(b) {
				t.Type = QString
			}
		}
		yield(t)
		n++
	}
}

// collect gathers text from s[i]: an atom (atom true) up to white space
// or an operator, or else a quoted string or domain literal up to its
// closing byte end, which is skipped. A backslash quotes the next byte;
// white space becomes a space (Postfix's COLLECT).
func collect(b []byte, s string, i int, end byte, atom bool) ([]byte, int) {
	for i < len(s) {
		c := s[i]
		if c == '\\' {
			i++
			if i >= len(s) {
				break
			}
			c = s[i]
		} else if atom {
			if IsSpace(c) || IsOperator(c) {
				break
			}
		} else if c == end {
			i++
			break
		}
		if IsSpace(c) {
			c = ' '
		}
		b = append(b, c)
		i++
	}
	return b, i
}

// atomNeedsQuote: an atom that holds a space, a control character or an
// operator (through backslash escapes; the backslash itself counts) is a
// quoted string when written out (tok822_quote_atom). 8-bit bytes are
// left alone.
func atomNeedsQuote(s []byte) bool {
	for _, c := range s {
		if c == ' ' || c < 0x20 || c == 0x7f || IsOperator(c) {
			return true
		}
	}
	return false
}

// scanComment reads a comment after its '(' and returns it in external
// form, parentheses included. Comments nest; a backslash keeps the next
// byte as it is.
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

// IsWord reports whether a token type is a word (atom, quoted string,
// comment, literal) rather than an operator.
func IsWord(t int) bool {
	return t == Atom || t == QString || t == Comment || t == DomLit
}

// Internalize writes tokens in internal form (tok822_internalize): no
// quoting, a space between adjacent words, after a comma and before '<'.
func Internalize(toks []Token) string {
	var b strings.Builder
	for i, t := range toks {
		switch t.Type {
		case Atom, QString, Comment:
			b.WriteString(t.Text)
		case DomLit:
			b.WriteByte('[')
			b.WriteString(t.Text)
			b.WriteByte(']')
		default:
			b.WriteByte(byte(t.Type))
		}
		if i+1 < len(toks) {
			next := toks[i+1]
			if !next.Glue && (t.Type == ',' || next.Type == '<' || IsWord(t.Type) && IsWord(next.Type)) {
				b.WriteByte(' ')
			}
		}
	}
	return b.String()
}

// Find returns the index of the first token of type t, or -1.
func Find(toks []Token, t int) int {
	for i, x := range toks {
		if x.Type == t {
			return i
		}
	}
	return -1
}

// RFind returns the index of the last token of type t, or -1.
func RFind(toks []Token, t int) int {
	for i := len(toks) - 1; i >= 0; i-- {
		if toks[i].Type == t {
			return i
		}
	}
	return -1
}
