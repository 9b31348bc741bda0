package maps

// POSIX regular expressions as glibc's regcomp(3) reads them in the C
// locale, translated to Go regexp syntax. The parser follows glibc's
// grammar and context rules (which operator is special where, which errors
// it reports and in what order), because a regexp: table written for
// Postfix must load the same rules and skip the same bad ones.

import (
	"fmt"
	"strings"
)

// reTrans is a translated POSIX pattern.
type reTrans struct {
	goExpr    string // Go syntax (valid unless backtrack)
	re2Expr   string // regexp2 syntax (the same text; used when backtrack)
	ngroups   int
	backtrack bool // uses back-references, \< or \>: Go cannot run it
}

// glibc's regerror(3) texts.
const (
	reEBadRpt  = "Invalid preceding regular expression"
	reEBrace   = "Unmatched \\{"
	reEBadBr   = "Invalid content of \\{\\}"
	reEBrack   = "Unmatched [, [^, [:, [., or [="
	reEParen   = "Unmatched ( or \\("
	reERange   = "Invalid range end"
	reECType   = "Invalid character class name"
	reEColl    = "Invalid collation character"
	reEEscape  = "Trailing backslash"
	reESubReg  = "Invalid back reference"
	reESize    = "Regular expression too big"
	reEBadPat  = "Invalid regular expression"
	reDupMax   = 0x7fff
	reWordSet  = `0-9A-Za-z_`
	reSpaceSet = `\t\n\x0B\f\r `
)

// POSIX token types.
const (
	rtChar = iota
	rtEnd
	rtAlt
	rtStar
	rtPlus
	rtQuest
	rtOpenDup  // { or \{
	rtCloseDup // } or \}
	rtOpen     // ( or \(
	rtClose    // ) or \)
	rtBracket
	rtDot
	rtAnchor // ^ $ \< \> \b \B \` \'
	rtBackref
	rtClass // \w \W \s \S
)

type reTok struct {
	typ int
	c   byte // the character (rtChar), anchor/class letter, backref digit
	n   int  // length in bytes
	// never: an rtChar that matches nothing. With REG_ICASE glibc
	// upper-cases the subject but reads the letter after a backslash as
	// written, so "\d", "\t", "\n" or "\x41" (any lower-case letter
	// but the operators \b, \s and \w) can never match.
	never bool
}

type rePosix struct {
	p        string
	i        int
	ere      bool
	icase    bool
	newline  bool
	ngroups  int
	done     uint64 // completed groups (for back-reference checks)
	back     bool
	err      string
	caretNow bool // BRE: a '^' here is an anchor (after \(, \|, an anchor)
	lastWord bool // the previous atom must end in a word character
}

// reTranslatePOSIX translates a regexp_table(5) pattern. ere selects
// extended syntax; icase and newline are REG_ICASE and REG_NEWLINE. The
// second result is glibc's error text when regcomp would refuse the pattern.
func reTranslatePOSIX(pat string, ere, icase, newline bool) (reTrans, string) {
	c := &rePosix{p: pat, ere: ere, icase: icase, newline: newline, caretNow: true}
	tok := c.fetch()
	body := c.parseRegExp(&tok, 0)
	if c.err != "" {
		return reTrans{}, c.err
	}
	var b strings.Builder
	b.WriteString("(?")
	if icase {
		b.WriteByte('i')
	}
	if newline {
		b.WriteByte('m')
	} else {
		b.WriteByte('s')
	}
	b.WriteString(")")
	b.WriteString(body)
	s := b.String()
	return reTrans{goExpr: s, re2Expr: s, ngroups: c.ngroups, backtrack: c.back}, ""
}

// peek reads the token at the current position (glibc peek_token).
func (c *rePosix) peek() reTok {
	if c.i >= len(c.p) {
		return reTok{typ: rtEnd}
	}
	ch := c.p[c.i]
	if ch == '\\' {
		if c.i+1 >= len(c.p) {
			c.setErr(reEEscape)
			return reTok{typ: rtEnd}
		}
		c2 := c.p[c.i+1]
		t := reTok{typ: rtChar, c: c2, n: 2, never: c.icase && 'a' <= c2 && c2 <= 'z'}
		switch c2 {
		case '|':
			if !c.ere {
				t.typ = rtAlt
			}
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			t.typ = rtBackref
		case '<', '>', 'b', 'B', '`', '\'':
			t.typ = rtAnchor
		case 'w', 'W', 's', 'S':
			t.typ = rtClass
		case '(':
			if !c.ere {
				t.typ = rtOpen
			}
		case ')':
			if !c.ere {
				t.typ = rtClose
			}
		case '+':
			if !c.ere {
				t.typ = rtPlus
			}
		case '?':
			if !c.ere {
				t.typ = rtQuest
			}
		case '{':
			if !c.ere {
				t.typ = rtOpenDup
			}
		case '}':
			if !c.ere {
				t.typ = rtCloseDup
			}
		}
		return t
	}
	t := reTok{typ: rtChar, c: ch, n: 1}
	switch ch {
	case '|':
		if c.ere {
			t.typ = rtAlt
		}
	case '*':
		t.typ = rtStar
	case '+':
		if c.ere {
			t.typ = rtPlus
		}
	case '?':
		if c.ere {
			t.typ = rtQuest
		}
	case '{':
		if c.ere {
			t.typ = rtOpenDup
		}
	case '}':
		if c.ere {
			t.typ = rtCloseDup
		}
	case '(':
		if c.ere {
			t.typ = rtOpen
		}
	case ')':
		if c.ere {
			t.typ = rtClose
		}
	case '[':
		t.typ = rtBracket
	case '.':
		t.typ = rtDot
	case '^':
		if c.ere || c.i == 0 || c.caretNow {
			t.typ = rtAnchor
		}
	case '$':
		if c.ere || c.i+1 == len(c.p) {
			t.typ = rtAnchor
		} else {
			save := c.i
			c.i++
			nt := c.peek()
			c.i = save
			if nt.typ == rtAlt || nt.typ == rtClose {
				t.typ = rtAnchor
			}
		}
	}
	return t
}

// fetch consumes and returns the next token.
func (c *rePosix) fetch() reTok {
	t := c.peek()
	c.caretNow = false
	c.i += t.n
	return t
}

// fetchCaret is fetch with a BRE '^' allowed to be an anchor.
func (c *rePosix) fetchCaret() reTok {
	t := c.peekWithCaret()
	c.caretNow = false
	c.i += t.n
	return t
}

func (c *rePosix) peekWithCaret() reTok {
	save := c.caretNow
	c.caretNow = true
	t := c.peek()
	c.caretNow = save
	return t
}

func (c *rePosix) setErr(e string) {
	if c.err == "" {
		c.err = e
	}
}

// parseRegExp parses alternatives (glibc parse_reg_exp).
func (c *rePosix) parseRegExp(tok *reTok, nest int) string {
	var alts []string
	br := c.parseBranch(tok, nest)
	if c.err != "" {
		return ""
	}
	alts = append(alts, br)
	for tok.typ == rtAlt {
		*tok = c.fetchCaret()
		if tok.typ != rtAlt && tok.typ != rtEnd && (nest == 0 || tok.typ != rtClose) {
			br = c.parseBranch(tok, nest)
			if c.err != "" {
				return ""
			}
		} else {
			br = ""
		}
		alts = append(alts, br)
	}
	if len(alts) == 1 {
		return alts[0]
	}
	return strings.Join(alts, "|")
}

// parseBranch parses a concatenation (glibc parse_branch).
func (c *rePosix) parseBranch(tok *reTok, nest int) string {
	var b strings.Builder
	c.lastWord = false
	for tok.typ != rtAlt && tok.typ != rtEnd && (nest == 0 || tok.typ != rtClose) {
		s := c.parseExpression(tok, nest)
		if c.err != "" {
			return ""
		}
		b.WriteString(s)
	}
	return b.String()
}

// parseExpression parses one atom and its repetition operators (glibc
// parse_expression). It returns the atom already wrapped so that the caller
// can concatenate it.
func (c *rePosix) parseExpression(tok *reTok, nest int) string {
	var atom string
	switch tok.typ {
	case rtChar:
		atom = reLit(tok.c)
		if tok.never {
			atom = `[^\x00-\x{10FFFF}]`
		}
	case rtOpen:
		atom = c.parseSubExp(tok, nest)
		if c.err != "" {
			return ""
		}
	case rtBracket:
		atom = c.parseBracket()
		if c.err != "" {
			return ""
		}
	case rtBackref:
		d := int(tok.c - '0')
		if c.done&(1<<d) == 0 {
			c.setErr(reESubReg)
			return ""
		}
		c.back = true
		atom = fmt.Sprintf(`(?:\%d)`, d)
	case rtOpenDup:
		if !c.ere {
			c.setErr(reEBadRpt)
			return ""
		}
		fallthrough
	case rtStar, rtPlus, rtQuest:
		if c.ere {
			c.setErr(reEBadRpt)
			return ""
		}
		atom = reLit(tok.c)
	case rtClose, rtCloseDup:
		// An unmatched ')' at the top level and a lone '}' are ordinary in
		// ERE; an unmatched \) is an error in BRE.
		if tok.typ == rtClose && !c.ere {
			c.setErr("Unmatched ) or \\)")
			return ""
		}
		atom = reLit(tok.c)
	case rtAlt:
		// Cannot happen: parseBranch stops at '|'.
		atom = ""
	case rtEnd:
		return ""
	case rtDot:
		atom = "."
	case rtAnchor:
		switch tok.c {
		case '^':
			if c.newline {
				atom = "^"
			} else {
				atom = `\A`
			}
		case '$':
			if c.newline {
				atom = "$"
			} else {
				atom = `\z`
			}
		case '`':
			atom = `\A`
		case '\'':
			atom = `\z`
		case 'b':
			atom = `\b`
		case 'B':
			atom = `\B`
		case '<':
			atom = `(?<![` + reWordSet + `])(?=[` + reWordSet + `])`
		case '>':
			atom = `(?<=[` + reWordSet + `])(?![` + reWordSet + `])`
			if c.lastWord {
				// After a character that must be a word character,
				// \> is just a word boundary, which Go has.
				atom = `\b`
			}
		}
		anchor := tok.c
		c.lastWord = false
		// An anchor takes no repetition; the next token is read with a
		// BRE '^' allowed to anchor.
		*tok = c.fetchCaret()
		if anchor == '<' && c.err == "" && c.nextIsWord(*tok) {
			// Before a word character that is not optional, \< is
			// just a word boundary.
			atom = `\b`
		}
		if (anchor == '<' || anchor == '>') && atom != `\b` {
			c.back = true
		}
		return atom
	case rtClass:
		switch tok.c {
		case 'w':
			atom = `[` + reWordSet + `]`
		case 'W':
			atom = `[^` + reWordSet + `]`
		case 's':
			atom = `[` + reSpaceSet + `]`
		case 'S':
			atom = `[^` + reSpaceSet + `]`
		}
	}
	word := reIsWordTok(*tok)
	*tok = c.fetch()
	if c.err != "" {
		return ""
	}
	// Repetition operators.
	quantified := false
	for tok.typ == rtStar || tok.typ == rtPlus || tok.typ == rtQuest || tok.typ == rtOpenDup {
		if tok.typ != rtPlus {
			word = false
		}
		if quantified {
			atom = "(?:" + atom + ")"
		}
		q, ok := c.parseDup(tok)
		if !ok {
			return ""
		}
		atom += q
		quantified = true
		// In BRE consecutive repetitions are not allowed.
		if !c.ere && (tok.typ == rtStar || tok.typ == rtOpenDup) {
			c.setErr(reEBadRpt)
			return ""
		}
	}
	// Remember whether the atom just parsed must end in a word character,
	// for a following \>.
	c.lastWord = word
	if quantified {
		return "(?:" + atom + ")"
	}
	return atom
}

// reIsWordTok reports whether t matches exactly one word character.
func reIsWordTok(t reTok) bool {
	return t.typ == rtChar && (isAlnum(t.c) || t.c == '_') || t.typ == rtClass && t.c == 'w'
}

// nextIsWord reports whether t, the token after a \<, is a word character
// that is not made optional by a following *, ? or interval.
func (c *rePosix) nextIsWord(t reTok) bool {
	if !reIsWordTok(t) {
		return false
	}
	save, saveErr := c.i, c.err
	nt := c.peek()
	c.i, c.err = save, saveErr
	return nt.typ != rtStar && nt.typ != rtQuest && nt.typ != rtOpenDup
}

// parseSubExp parses a group after its '(' (glibc parse_sub_exp).
func (c *rePosix) parseSubExp(tok *reTok, nest int) string {
	c.ngroups++
	idx := c.ngroups
	*tok = c.fetchCaret()
	var body string
	if tok.typ == rtClose {
		body = ""
	} else {
		body = c.parseRegExp(tok, nest+1)
		if c.err != "" {
			return ""
		}
		if tok.typ == rtEnd {
			c.setErr(reEParen)
			return ""
		}
		if tok.typ != rtClose {
			c.setErr(reEParen)
			return ""
		}
	}
	if idx < 64 {
		c.done |= 1 << idx
	}
	return "(" + body + ")"
}

// fetchNumber reads a repeat count (glibc fetch_number): -1 none, -2 bad.
func (c *rePosix) fetchNumber() (int, reTok) {
	num := -1
	for {
		t := c.fetch()
		if t.typ == rtEnd {
			return -2, t
		}
		if t.typ == rtCloseDup || (t.typ == rtChar && t.c == ',') {
			return num, t
		}
		switch {
		case t.typ != rtChar || t.c < '0' || t.c > '9' || num == -2:
			num = -2
		case num == -1:
			num = int(t.c - '0')
		default:
			num = min(reDupMax+1, num*10+int(t.c-'0'))
		}
	}
}

// parseDup parses one repetition operator and fetches the next token.
func (c *rePosix) parseDup(tok *reTok) (string, bool) {
	var q string
	if tok.typ == rtOpenDup {
		start, st := c.fetchNumber()
		end := 0
		if start == -1 {
			if st.typ == rtChar && st.c == ',' {
				start = 0
			} else {
				c.setErr(reEBadBr)
				return "", false
			}
		}
		last := st
		if start != -2 {
			switch {
			case st.typ == rtCloseDup:
				end = start
			case st.typ == rtChar && st.c == ',':
				end, last = c.fetchNumber()
			default:
				end = -2
			}
		}
		if start == -2 || end == -2 {
			if last.typ == rtEnd {
				c.setErr(reEBrace)
			} else {
				c.setErr(reEBadBr)
			}
			return "", false
		}
		if (end != -1 && start > end) || last.typ != rtCloseDup {
			c.setErr(reEBadBr)
			return "", false
		}
		top := end
		if end == -1 {
			top = start
		}
		if top > reDupMax {
			c.setErr(reESize)
			return "", false
		}
		switch {
		case end == -1:
			q = fmt.Sprintf("{%d,}", start)
		case start == end:
			q = fmt.Sprintf("{%d}", start)
		default:
			q = fmt.Sprintf("{%d,%d}", start, end)
		}
	} else {
		q = map[int]string{rtStar: "*", rtPlus: "+", rtQuest: "?"}[tok.typ]
	}
	*tok = c.fetch()
	return q, c.err == ""
}

// reLit renders one pattern byte as a literal in Go/regexp2 syntax.
func reLit(ch byte) string {
	switch {
	case ch >= 0x80:
		return fmt.Sprintf(`\x{%X}`, rePUA+int(ch))
	case ch < 0x20 || ch == 0x7f:
		return fmt.Sprintf(`\x{%X}`, ch)
	case strings.IndexByte(`\.+*?()|[]{}^$#`, ch) >= 0:
		return `\` + string(ch)
	}
	return string(ch)
}

// reClassChar renders a byte inside a bracket expression.
func reClassChar(ch byte) string {
	switch {
	case ch >= 0x80:
		return fmt.Sprintf(`\x{%X}`, rePUA+int(ch))
	case ch < 0x20 || ch == 0x7f:
		return fmt.Sprintf(`\x{%X}`, ch)
	case strings.IndexByte(`\[]^-`, ch) >= 0:
		return `\` + string(ch)
	}
	return string(ch)
}

// reClassRange renders a byte range, split where it crosses from ASCII to
// the mapped upper half.
func reClassRange(lo, hi byte) string {
	if lo == hi {
		return reClassChar(lo)
	}
	if lo < 0x80 && hi >= 0x80 {
		return reClassChar(lo) + "-" + reClassChar(0x7f) + reClassChar(0x80) + "-" + reClassChar(hi)
	}
	return reClassChar(lo) + "-" + reClassChar(hi)
}

// rePosixClasses are the C locale's character classes.
var rePosixClasses = map[string]string{
	"alpha":  `A-Za-z`,
	"upper":  `A-Z`,
	"lower":  `a-z`,
	"digit":  `0-9`,
	"xdigit": `0-9A-Fa-f`,
	"space":  reSpaceSet,
	"print":  `\x{20}-\x{7E}`,
	"punct":  `!-/:-@\[-\x{60}\{-~`,
	"graph":  `!-~`,
	"cntrl":  `\x{0}-\x{1F}\x{7F}`,
	"blank":  `\t `,
	"alnum":  `0-9A-Za-z`,
}

func reUpper(ch byte) byte {
	if 'a' <= ch && ch <= 'z' {
		return ch - 'a' + 'A'
	}
	return ch
}

// Bracket element kinds.
const (
	rbChar = iota
	rbColl
	rbEquiv
	rbClass
)

type reBElem struct {
	kind int
	ch   byte
	name string
}

// bracket token types (glibc peek_token_bracket).
const (
	rbtChar = iota
	rbtEnd
	rbtRange
	rbtClose
	rbtNonMatch
	rbtOpenColl
	rbtOpenEquiv
	rbtOpenClass
)

func (c *rePosix) peekBracket() (int, byte, int) {
	if c.i >= len(c.p) {
		return rbtEnd, 0, 0
	}
	ch := c.p[c.i]
	if c.icase {
		ch = reUpper(ch)
	}
	if ch == '[' {
		var c2 byte
		if c.i+1 < len(c.p) {
			c2 = c.p[c.i+1]
		}
		switch c2 {
		case '.':
			return rbtOpenColl, ch, 2
		case '=':
			return rbtOpenEquiv, ch, 2
		case ':':
			return rbtOpenClass, ch, 2
		}
		return rbtChar, ch, 1
	}
	switch ch {
	case '-':
		return rbtRange, ch, 1
	case ']':
		return rbtClose, ch, 1
	case '^':
		return rbtNonMatch, ch, 1
	}
	return rbtChar, ch, 1
}

// parseBracketElem is glibc parse_bracket_element.
func (c *rePosix) parseBracketElem(typ int, ch byte, n int, acceptHyphen bool) (reBElem, string) {
	c.i += n
	switch typ {
	case rbtOpenColl, rbtOpenEquiv, rbtOpenClass:
		delim := map[int]byte{rbtOpenColl: '.', rbtOpenEquiv: '=', rbtOpenClass: ':'}[typ]
		if c.i >= len(c.p) {
			return reBElem{}, reEBrack
		}
		var name []byte
		for i := 0; ; i++ {
			if i >= 32 {
				return reBElem{}, reEBrack
			}
			b := c.p[c.i]
			if c.icase && typ != rbtOpenClass {
				b = reUpper(b)
			}
			c.i++
			if c.i >= len(c.p) {
				return reBElem{}, reEBrack
			}
			if b == delim && c.p[c.i] == ']' {
				break
			}
			name = append(name, b)
		}
		c.i++
		kind := map[int]int{rbtOpenColl: rbColl, rbtOpenEquiv: rbEquiv, rbtOpenClass: rbClass}[typ]
		return reBElem{kind: kind, name: string(name)}, ""
	case rbtRange:
		if !acceptHyphen {
			t2, _, _ := c.peekBracket()
			if t2 != rbtClose {
				return reBElem{}, reERange
			}
		}
	}
	return reBElem{kind: rbChar, ch: ch}, ""
}

// parseBracket parses a bracket expression after its '[' (glibc
// parse_bracket_exp). In POSIX a backslash is an ordinary character inside
// brackets, ']' first in the list is literal, and '-' first or last is
// literal.
func (c *rePosix) parseBracket() string {
	var items strings.Builder
	nonMatch := false
	typ, ch, n := c.peekBracket()
	if typ == rbtEnd {
		c.setErr(reEBadPat)
		return ""
	}
	if typ == rbtNonMatch {
		nonMatch = true
		c.i += n
		typ, ch, n = c.peekBracket()
		if typ == rbtEnd {
			c.setErr(reEBadPat)
			return ""
		}
	}
	if typ == rbtClose {
		typ = rbtChar
	}
	first := true
	for {
		if typ == rbtEnd {
			c.setErr(reEBrack)
			return ""
		}
		start, e := c.parseBracketElem(typ, ch, n, first)
		if e != "" {
			c.setErr(e)
			return ""
		}
		first = false
		typ, ch, n = c.peekBracket()
		isRange := false
		var t2 int
		var ch2 byte
		var n2 int
		if start.kind != rbClass && start.kind != rbEquiv {
			if typ == rbtEnd {
				c.setErr(reEBrack)
				return ""
			}
			if typ == rbtRange {
				c.i += n
				t2, ch2, n2 = c.peekBracket()
				if t2 == rbtEnd {
					c.setErr(reEBrack)
					return ""
				}
				if t2 == rbtClose {
					c.i -= n
					typ = rbtChar
				} else {
					isRange = true
				}
			}
		}
		if isRange {
			end, e := c.parseBracketElem(t2, ch2, n2, true)
			if e != "" {
				c.setErr(e)
				return ""
			}
			typ, ch, n = c.peekBracket()
			lo, e1 := reRangeEnd(start)
			hi, e2 := reRangeEnd(end)
			switch {
			case e1 != "":
				c.setErr(e1)
				return ""
			case e2 != "":
				c.setErr(e2)
				return ""
			case lo > hi:
				c.setErr(reERange)
				return ""
			}
			items.WriteString(reClassRange(lo, hi))
		} else {
			switch start.kind {
			case rbChar:
				items.WriteString(reClassChar(start.ch))
			case rbColl, rbEquiv:
				if len(start.name) != 1 {
					c.setErr(reEColl)
					return ""
				}
				items.WriteString(reClassChar(start.name[0]))
			case rbClass:
				name := start.name
				if c.icase && (name == "upper" || name == "lower") {
					name = "alpha"
				}
				set, ok := rePosixClasses[name]
				if !ok {
					c.setErr(reECType)
					return ""
				}
				items.WriteString(set)
			}
		}
		if typ == rbtEnd {
			c.setErr(reEBrack)
			return ""
		}
		if typ == rbtClose {
			c.i += n
			break
		}
	}
	if nonMatch {
		if c.newline {
			return `[^\n` + items.String() + `]`
		}
		return `[^` + items.String() + `]`
	}
	return `[` + items.String() + `]`
}

// reRangeEnd gives the byte value of a range end point (glibc
// build_range_exp in the C locale).
func reRangeEnd(e reBElem) (byte, string) {
	switch e.kind {
	case rbChar:
		return e.ch, ""
	case rbColl:
		if len(e.name) != 1 {
			return 0, reEColl
		}
		return e.name[0], ""
	}
	return 0, reERange
}
