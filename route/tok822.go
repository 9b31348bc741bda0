package route

import "strings"

// This file is the small part of Postfix's tok822 address parser that the
// resolver needs (tok822_scan, tok822_internalize). Addresses are scanned
// in external (quoted) form and turned back into internal form, as
// trivial-rewrite does, so that routing operators inside a quoted local
// part stay visible only where resolve_dequoted_address wants them.
// restrictions has the same scanner for its built-in resolver.

// Token types other than single-character operators (those are the
// operator byte itself).
const (
	tkAtom = 256 + iota
	tkQString
	tkDomLit
	tkComment
)

// tok is one RFC 822 token; '%', '!' and '|' count as operators too.
type tok struct {
	t int
	s string
	// glue: no space is written before this token. Postfix writes the
	// local part of "!user" (a bang path with an empty site) without the
	// spaces it puts between other adjacent words (seen with Postfix 3.7:
	// "!a b@x" resolves to "ab@").
	glue bool
}

// opChars are the single-character operators: "|%!" and the RFC 822
// specials.
const opChars = "|%!()<>@,;:\\\".[]"

func isOpChar(c byte) bool { return strings.IndexByte(opChars, c) >= 0 }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// scan822 tokenizes an address in external form.
func scan822(s string) []tok {
	toks := make([]tok, 0, 8)
	var b strings.Builder
	// collect reads up to a character for which stop is true, honouring
	// backslash escapes and turning white space into spaces.
	collect := func(i int, stop func(byte) bool) (string, int) {
		b.Reset()
		for i < len(s) {
			c := s[i]
			if c == '\\' {
				i++
				if i >= len(s) {
					break
				}
				c = s[i]
			} else if stop(c) {
				break
			}
			if isSpace(c) {
				c = ' '
			}
			b.WriteByte(c)
			i++
		}
		return b.String(), i
	}
	for i := 0; i < len(s); {
		c := s[i]
		i++
		switch {
		case isSpace(c):
			continue
		case c == '(':
			// Comments nest and are kept as written.
			b.Reset()
			b.WriteByte('(')
			level := 1
			for i < len(s) && level > 0 {
				ch := s[i]
				b.WriteByte(ch)
				i++
				switch ch {
				case '(':
					level++
				case ')':
					level--
				case '\\':
					if i < len(s) {
						b.WriteByte(s[i])
						i++
					}
				}
			}
			toks = append(toks, tok{t: tkComment, s: b.String()})
		case c == '[':
			var text string
			text, i = collect(i, func(ch byte) bool { return ch == ']' })
			if i < len(s) {
				i++
			}
			toks = append(toks, tok{t: tkDomLit, s: text})
		case c == '"':
			var text string
			text, i = collect(i, func(ch byte) bool { return ch == '"' })
			if i < len(s) {
				i++
			}
			toks = append(toks, tok{t: tkQString, s: text})
		case c != '\\' && isOpChar(c):
			toks = append(toks, tok{t: int(c)})
		default:
			var text string
			text, i = collect(i-1, func(ch byte) bool { return isSpace(ch) || isOpChar(ch) })
			t := tkAtom
			// An atom holding specials (after backslash escapes) is a
			// quoted string when written out again.
			for j := 0; j < len(text); j++ {
				if ch := text[j]; ch == ' ' || ch < 0x20 || ch == 0x7f || isOpChar(ch) {
					t = tkQString
					break
				}
			}
			toks = append(toks, tok{t: t, s: text})
		}
	}
	return toks
}

func nonOperator(t int) bool {
	return t == tkAtom || t == tkQString || t == tkComment || t == tkDomLit
}

// internalize822 turns tokens into internal form: no quoting, a space
// between adjacent words.
func internalize822(toks []tok) string {
	var b strings.Builder
	for i, t := range toks {
		switch t.t {
		case tkAtom, tkQString, tkComment:
			b.WriteString(t.s)
		case tkDomLit:
			b.WriteByte('[')
			b.WriteString(t.s)
			b.WriteByte(']')
		default:
			b.WriteByte(byte(t.t))
		}
		if i+1 < len(toks) {
			next := toks[i+1].t
			if !toks[i+1].glue && (t.t == ',' || next == '<' || nonOperator(t.t) && nonOperator(next)) {
				b.WriteByte(' ')
			}
		}
	}
	return b.String()
}

func rfindTok(toks []tok, t int) int {
	for i := len(toks) - 1; i >= 0; i-- {
		if toks[i].t == t {
			return i
		}
	}
	return -1
}

func findTok(toks []tok, t int) int {
	for i, x := range toks {
		if x.t == t {
			return i
		}
	}
	return -1
}
