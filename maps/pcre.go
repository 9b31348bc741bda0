package maps

// pcre_table(5) patterns, rewritten for github.com/dlclark/regexp2.
//
// regexp2 is a backtracking engine with Perl/.NET syntax, so most PCRE2
// patterns mean the same there. rePCRERewrite walks the pattern once to
// bridge the differences that matter for Postfix tables:
//
//   - bytes >= 0x80 (and \xHH escapes above 0x7F) become the private-use
//     runes that stand for bytes (see regexp.go), as PCRE2 runs in byte mode;
//   - the "x" flag is applied here (whitespace and # comments dropped), as
//     .NET's own "x" differs inside character classes;
//   - "U" (ungreedy) swaps greedy and lazy quantifiers; possessive
//     quantifiers become atomic groups; "A" anchors at the start; "E" turns
//     "$" into \z;
//   - \s, \h, \v, \R, \N and POSIX [:classes:] get their PCRE2 meanings in
//     the C locale;
//   - named groups become plain groups, because .NET numbers named groups
//     after unnamed ones while PCRE numbers them in order.
//
// Not supported (the rule is skipped with a warning naming the feature):
// recursion and subroutine calls ((?R), (?1), (?&name), \g<..>), branch
// reset (?|...), conditionals (?(...)...), \K, \X, \C, backtracking verbs
// (*VERB), callouts and [:^class:]. Known differences: .NET accepts
// variable-length lookbehind where PCRE2 refuses it, and \p{..} sees bytes
// >= 0x80 as opaque rather than as Latin-1 code points.
//
// The rewriter also decides whether Go's regexp package may answer "does
// this rule match?" for the rule: only when every construct it saw means the
// same in both engines (no lookaround, back-references, atomic groups, \G,
// \Z, or a "$" that is not at the very end of the pattern; a multiline "^"
// only at the start of a pattern that cannot match empty). Go's engine also
// gives the $n captures where no group sits under a repetition
// (reCapturesPlain): its leftmost-first choices are then PCRE's; other
// captures come from regexp2.

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"

	"github.com/dlclark/regexp2"
)

// rePCREFlags is the state of the pattern options at one point.
type rePCREFlags struct {
	i, m, s, x, u, n bool
}

type rePCREGroup struct {
	flags   rePCREFlags
	start2  int // start offset in the regexp2 output
	startGo int
	// For PCRE2's rule that a lookbehind has a fixed length (each of its
	// top-level alternatives may have its own): the length of the current
	// branch (-1 variable), of the first branch (-2 none yet), and whether
	// branches differ.
	lb, look         bool
	curLen, firstLen int
	uneven           bool
}

// rePCRE holds the state of one rewrite.
type rePCRE struct {
	p       string
	i       int
	out2    strings.Builder
	outGo   strings.Builder
	goSafe  bool
	ngroups int
	names   map[string]int
	fl      rePCREFlags
	stack   []rePCREGroup
	dollarE bool
	// The last atom, for quantifiers: start offsets in both outputs, -1 if
	// there is none (start of a group or branch, after an assertion).
	atom2, atomGo int
	quantified    bool
	atomLen       int // length in characters of the last atom, -1 variable
	errOff        int
	errMsg        string
	// startGo is the length of the Go output before the pattern proper;
	// mCaret says the pattern starts with a multiline "^" written as Go's.
	startGo int
	mCaret  bool
}

type rePCREError struct {
	off int
	msg string
}

func (c *rePCRE) fail(off int, msg string) {
	if c.errMsg == "" {
		c.errOff, c.errMsg = off, msg
	}
}

func (c *rePCRE) emit(s string) {
	c.out2.WriteString(s)
	c.outGo.WriteString(s)
}

// emitAtom writes a one-character atom to both outputs and remembers
// where it starts.
func (c *rePCRE) emitAtom(s2, sGo string) { c.emitAtomLen(s2, sGo, 1) }

// emitAtomLen writes an atom that matches n characters (-1: varies).
func (c *rePCRE) emitAtomLen(s2, sGo string, n int) {
	c.atom2, c.atomGo = c.out2.Len(), c.outGo.Len()
	c.quantified = false
	c.out2.WriteString(s2)
	c.outGo.WriteString(sGo)
	c.atomLen = n
	c.addLen(n)
}

// addLen adds n characters to the current branch of the innermost group.
func (c *rePCRE) addLen(n int) {
	if len(c.stack) == 0 {
		return
	}
	g := &c.stack[len(c.stack)-1]
	if n < 0 || g.curLen < 0 {
		g.curLen = -1
	} else {
		g.curLen += n
	}
}

// inLookbehind reports whether the current position is inside a lookbehind.
func (c *rePCRE) inLookbehind() bool {
	for _, g := range c.stack {
		if g.lb {
			return true
		}
	}
	return false
}

// endBranch closes a branch of the innermost group at '|' or ')'.
func (c *rePCRE) endBranch() {
	g := &c.stack[len(c.stack)-1]
	if g.lb && g.curLen < 0 {
		c.fail(c.i, "lookbehind assertion is not fixed length")
	}
	if g.firstLen == -2 {
		g.firstLen = g.curLen
	} else if g.firstLen != g.curLen {
		g.uneven = true
	}
}

func (c *rePCRE) noAtom() {
	c.atom2, c.atomGo = -1, -1
	c.quantified = false
}

// rePCRERewrite rewrites a PCRE2 pattern with the table flags into regexp2
// syntax, and into Go syntax when goSafe.
func rePCRERewrite(pat string, fl rePCREFlags, anchored, dollarEnd bool) (re2Expr, goExpr string, goSafe bool, ngroups int, err *rePCREError) {
	c := &rePCRE{p: pat, goSafe: true, fl: fl, dollarE: dollarEnd, names: map[string]int{}}
	c.noAtom()
	prefix := "(?"
	if fl.i {
		prefix += "i"
	}
	if fl.m {
		prefix += "m"
	}
	if fl.s {
		prefix += "s"
	}
	prefix += ")"
	if prefix == "(?)" {
		prefix = ""
	}
	c.emit(prefix)
	if anchored {
		c.emit(`\A(?:`)
	}
	c.startGo = c.outGo.Len()
	c.run()
	if c.errMsg == "" && len(c.stack) > 0 {
		c.fail(len(pat), "missing closing parenthesis")
	}
	if c.errMsg != "" {
		return "", "", false, 0, &rePCREError{c.errOff, c.errMsg}
	}
	if anchored {
		c.emit(`)`)
	}
	if c.goSafe && c.mCaret {
		if re, err := syntax.Parse(c.outGo.String(), syntax.Perl); err != nil || reAnalyse(re).min == 0 {
			c.goSafe = false
		}
	}
	return c.out2.String(), c.outGo.String(), c.goSafe, c.ngroups, nil
}

func (c *rePCRE) run() {
	p := c.p
	for c.i < len(p) && c.errMsg == "" {
		ch := p[c.i]
		if c.fl.x {
			if isSpace(ch) {
				c.i++
				continue
			}
			if ch == '#' {
				for c.i < len(p) && p[c.i] != '\n' {
					c.i++
				}
				continue
			}
		}
		switch ch {
		case '\\':
			c.escape()
		case '[':
			c.class()
		case '(':
			c.group()
		case ')':
			if len(c.stack) == 0 {
				c.fail(c.i, "unmatched closing parenthesis")
				return
			}
			c.endBranch()
			g := c.stack[len(c.stack)-1]
			c.stack = c.stack[:len(c.stack)-1]
			c.emit(")")
			c.fl = g.flags
			c.atom2, c.atomGo = g.start2, g.startGo
			c.quantified = false
			glen := g.firstLen
			if g.uneven || glen < 0 {
				glen = -1
				if !g.lb && c.inLookbehind() {
					c.fail(c.i, "lookbehind assertion is not fixed length")
				}
			}
			if g.look {
				glen = 0
			}
			c.atomLen = glen
			c.addLen(glen)
			c.i++
		case '|':
			if len(c.stack) > 0 {
				c.endBranch()
				c.stack[len(c.stack)-1].curLen = 0
			}
			c.emit("|")
			c.noAtom()
			c.i++
		case '*', '+', '?':
			c.quantifier(string(ch), c.i+1)
		case '{':
			if q, n, ok := c.brace(); ok {
				if c.errMsg != "" {
					return
				}
				c.quantifier(q, c.i+n)
			} else {
				c.emitAtom(`\{`, `\{`)
				c.i++
			}
		case '.':
			c.emitAtom(".", ".")
			c.i++
		case '^':
			if c.fl.m {
				// PCRE2's multiline ^ does not match after a newline
				// that ends the subject; .NET's and Go's do.
				c.out2.WriteString(`(?:\A|(?<=\n)(?!\z))`)
				if len(c.stack) == 0 && c.outGo.Len() == c.startGo {
					// At the start of the pattern Go's (?m:^) differs
					// only at the very end of the key, where a pattern
					// that cannot match empty cannot match anyway;
					// rePCRERewrite checks that at the end.
					c.outGo.WriteString(`(?m:^)`)
					c.mCaret = true
				} else {
					c.goSafe = false
				}
			} else {
				c.emit("^")
			}
			c.noAtom()
			c.i++
		case '$':
			c.i++
			switch {
			case c.fl.m:
				c.emit("$")
			case c.dollarE:
				c.emit(`\z`)
			default:
				// PCRE: the end, or before a newline that ends the subject.
				c.out2.WriteString("$")
				if len(c.stack) == 0 && c.atEndOrAlt() {
					// Consuming the final newline changes nothing
					// for a yes/no answer when nothing follows.
					c.outGo.WriteString(`(?:\n?\z)`)
				} else {
					c.goSafe = false
				}
			}
			c.noAtom()
		default:
			s := reLit(ch)
			c.emitAtom(s, s)
			c.i++
		}
	}
}

// atEndOrAlt reports whether only ignorable text remains before the end of
// the pattern or a top-level '|'.
func (c *rePCRE) atEndOrAlt() bool {
	j := c.i
	for j < len(c.p) {
		ch := c.p[j]
		if c.fl.x && isSpace(ch) {
			j++
			continue
		}
		if c.fl.x && ch == '#' {
			for j < len(c.p) && c.p[j] != '\n' {
				j++
			}
			continue
		}
		return ch == '|'
	}
	return true
}

// brace recognises a {n}, {n,} or {n,m} quantifier at c.i.
func (c *rePCRE) brace() (string, int, bool) {
	p := c.p[c.i:]
	j := 1
	num := func() (int, bool) {
		k := j
		for j < len(p) && p[j] >= '0' && p[j] <= '9' {
			j++
		}
		if j == k {
			return 0, false
		}
		n, err := strconv.Atoi(p[k:j])
		if err != nil || n > 65535 {
			n = 65536
		}
		return n, true
	}
	lo, ok := num()
	if !ok {
		return "", 0, false
	}
	hi := lo
	if j < len(p) && p[j] == ',' {
		j++
		if j < len(p) && p[j] == '}' {
			hi = -1
		} else if hi, ok = num(); !ok {
			return "", 0, false
		}
	}
	if j >= len(p) || p[j] != '}' {
		return "", 0, false
	}
	j++
	if lo > 65535 || hi > 65535 {
		c.fail(c.i+j-1, "number too big in {} quantifier")
		return "", j, true
	}
	if hi >= 0 && hi < lo {
		c.fail(c.i+j-1, "numbers out of order in {} quantifier")
		return "", j, true
	}
	switch {
	case hi < 0:
		return fmt.Sprintf("{%d,}", lo), j, true
	case hi == lo:
		return fmt.Sprintf("{%d}", lo), j, true
	}
	return fmt.Sprintf("{%d,%d}", lo, hi), j, true
}

// quantifier applies q to the last atom; next is the offset after q.
func (c *rePCRE) quantifier(q string, next int) {
	if c.atom2 < 0 {
		c.fail(c.i, "quantifier does not follow a repeatable item")
		return
	}
	if c.quantified {
		// PCRE2 refuses a quantifier after a quantifier (a+{2}, a*?*).
		c.fail(c.i, "quantifier does not follow a repeatable item")
		return
	}
	c.i = next
	lazy, possessive := false, false
	if c.i < len(c.p) && c.p[c.i] == '?' {
		lazy = true
		c.i++
	} else if c.i < len(c.p) && c.p[c.i] == '+' {
		possessive = true
		c.i++
	}
	if c.fl.u && !possessive {
		lazy = !lazy
	}
	if n, fixed := reFixedCount(q); fixed {
		if c.atomLen >= 0 {
			c.addLen(c.atomLen * (n - 1))
		}
	} else {
		if c.inLookbehind() {
			c.fail(c.i, "lookbehind assertion is not fixed length")
			return
		}
		c.addLen(-1)
	}
	if lazy {
		q += "?"
	}
	if possessive {
		// X*+ is (?>X*).
		s2 := c.out2.String()
		c.out2.Reset()
		c.out2.WriteString(s2[:c.atom2] + "(?>" + s2[c.atom2:] + q + ")")
		c.outGo.WriteString(q)
		c.goSafe = false
	} else {
		c.emit(q)
	}
	c.quantified = true
}

// charLit renders a byte value as a literal.
func (c *rePCRE) charLit(v int) string { return reLit(byte(v)) }

// escapeValue parses a character escape at c.i (just after the backslash)
// that stands for one byte: octal, \x, \o, \c and the letter escapes. ok is
// false when the escape is not a character.
func (c *rePCRE) escapeValue(inClass bool) (int, bool) {
	p := c.p
	ch := p[c.i]
	switch ch {
	case 'a':
		c.i++
		return 7, true
	case 'e':
		c.i++
		return 27, true
	case 'f':
		c.i++
		return 12, true
	case 'n':
		c.i++
		return 10, true
	case 'r':
		c.i++
		return 13, true
	case 't':
		c.i++
		return 9, true
	case 'b':
		if inClass {
			c.i++
			return 8, true
		}
	case '0':
		v, j := 0, c.i
		for k := 0; k < 3 && j < len(p) && p[j] >= '0' && p[j] <= '7'; k++ {
			v = v*8 + int(p[j]-'0')
			j++
		}
		c.i = j
		return v, true
	case 'x':
		c.i++
		if c.i < len(p) && p[c.i] == '{' {
			end := strings.IndexByte(p[c.i:], '}')
			if end < 0 {
				c.fail(c.i, "missing terminating } for \\x{}")
				return 0, true
			}
			v, err := strconv.ParseUint(p[c.i+1:c.i+end], 16, 32)
			if err != nil {
				c.fail(c.i+1, "non-hex character in \\x{} (closing brace missing?)")
				return 0, true
			}
			c.i += end + 1
			if v > 0xFF {
				c.fail(c.i-1, "character code point value in \\x{} or \\o{} is too large")
				return 0, true
			}
			return int(v), true
		}
		v := 0
		for k := 0; k < 2 && c.i < len(p) && strings.IndexByte("0123456789abcdefABCDEF", p[c.i]) >= 0; k++ {
			d, _ := strconv.ParseUint(p[c.i:c.i+1], 16, 8)
			v = v*16 + int(d)
			c.i++
		}
		return v, true
	case 'o':
		c.i++
		if c.i >= len(p) || p[c.i] != '{' {
			c.fail(c.i, "missing opening brace after \\o")
			return 0, true
		}
		end := strings.IndexByte(p[c.i:], '}')
		if end < 0 {
			c.fail(c.i, "missing } after \\o{")
			return 0, true
		}
		v, err := strconv.ParseUint(p[c.i+1:c.i+end], 8, 32)
		if err != nil {
			c.fail(c.i+1, "non-octal character in \\o{} (closing brace missing?)")
			return 0, true
		}
		c.i += end + 1
		if v > 0xFF {
			c.fail(c.i-1, "character code point value in \\x{} or \\o{} is too large")
			return 0, true
		}
		return int(v), true
	case 'c':
		c.i++
		if c.i >= len(p) {
			c.fail(c.i, "\\c at end of pattern")
			return 0, true
		}
		x := p[c.i]
		c.i++
		if x >= 0x80 {
			c.fail(c.i, "\\c must be followed by a printable ASCII character")
			return 0, true
		}
		return int(reUpper(x) ^ 0x40), true
	}
	return 0, false
}

// escape handles a backslash sequence outside a class.
func (c *rePCRE) escape() {
	p := c.p
	at := c.i
	c.i++
	if c.i >= len(p) {
		c.fail(c.i, "\\ at end of pattern")
		return
	}
	ch := p[c.i]
	if !isAlnum(ch) {
		c.i++
		s := reLit(ch)
		c.emitAtom(s, s)
		return
	}
	switch ch {
	case 'd', 'D', 'w', 'W':
		c.i++
		c.emitAtom(`\`+string(ch), `\`+string(ch))
		return
	case 's':
		c.i++
		c.emitAtom(`[`+reSpaceSet+`]`, `[`+reSpaceSet+`]`)
		return
	case 'S':
		c.i++
		c.emitAtom(`[^`+reSpaceSet+`]`, `[^`+reSpaceSet+`]`)
		return
	case 'h':
		c.i++
		c.emitAtom(`[\t \x{F7A0}]`, `[\t \x{F7A0}]`)
		return
	case 'H':
		c.i++
		c.emitAtom(`[^\t \x{F7A0}]`, `[^\t \x{F7A0}]`)
		return
	case 'v':
		c.i++
		c.emitAtom(`[\n\x0B\f\r\x{F785}]`, `[\n\x0B\f\r\x{F785}]`)
		return
	case 'V':
		c.i++
		c.emitAtom(`[^\n\x0B\f\r\x{F785}]`, `[^\n\x0B\f\r\x{F785}]`)
		return
	case 'R':
		c.i++
		c.emitAtomLen(`(?>\r\n|[\n\x0B\f\r\x{F785}])`, `(?:\r\n|[\n\x0B\f\r\x{F785}])`, -1)
		c.goSafe = false
		return
	case 'N':
		c.i++
		c.emitAtom(`[^\n]`, `[^\n]`)
		return
	case 'b', 'B', 'A', 'z':
		c.i++
		c.emit(`\` + string(ch))
		c.noAtom()
		return
	case 'Z', 'G':
		c.i++
		c.emit(`\` + string(ch))
		c.goSafe = false
		c.noAtom()
		return
	case 'Q':
		c.i++
		end := strings.Index(p[c.i:], `\E`)
		lit := p[c.i:]
		if end >= 0 {
			lit = p[c.i : c.i+end]
			c.i += end + 2
		} else {
			c.i = len(p)
		}
		for k := 0; k < len(lit); k++ {
			s := reLit(lit[k])
			c.emitAtom(s, s)
		}
		return
	case 'E':
		c.i++
		return
	case 'p', 'P':
		c.i++
		var prop string
		if c.i < len(p) && p[c.i] == '{' {
			end := strings.IndexByte(p[c.i:], '}')
			if end < 0 {
				c.fail(c.i, "malformed \\P or \\p sequence")
				return
			}
			prop = p[c.i+1 : c.i+end]
			c.i += end + 1
		} else if c.i < len(p) {
			prop = p[c.i : c.i+1]
			c.i++
		}
		neg := ch == 'P'
		if strings.HasPrefix(prop, "^") {
			neg, prop = !neg, prop[1:]
		}
		letter := "p"
		if neg {
			letter = "P"
		}
		c.emitAtom(`\`+letter+`{`+prop+`}`, "")
		c.goSafe = false
		return
	case 'g':
		c.i++
		if c.i < len(p) && (p[c.i] == '<' || p[c.i] == '\'') {
			c.fail(c.i, "unsupported by postkit: subroutine call \\g<...>")
			return
		}
		var ref string
		if c.i < len(p) && p[c.i] == '{' {
			end := strings.IndexByte(p[c.i:], '}')
			if end < 0 {
				c.fail(c.i, "\\g is not followed by a braced, angle-bracketed, or quoted name/number or by a plain number")
				return
			}
			ref = p[c.i+1 : c.i+end]
			c.i += end + 1
		} else {
			j := c.i
			if j < len(p) && (p[j] == '-' || p[j] == '+') {
				j++
			}
			for j < len(p) && p[j] >= '0' && p[j] <= '9' {
				j++
			}
			ref = p[c.i:j]
			c.i = j
		}
		c.backref(at, ref)
		return
	case 'k':
		c.i++
		if c.i >= len(p) {
			c.fail(c.i, "\\k is not followed by a braced, angle-bracketed, or quoted name")
			return
		}
		closer := map[byte]byte{'<': '>', '\'': '\'', '{': '}'}[p[c.i]]
		if closer == 0 {
			c.fail(c.i, "\\k is not followed by a braced, angle-bracketed, or quoted name")
			return
		}
		end := strings.IndexByte(p[c.i+1:], closer)
		if end < 0 {
			c.fail(c.i, "syntax error in subpattern name (missing terminator?)")
			return
		}
		name := p[c.i+1 : c.i+1+end]
		c.i += end + 2
		c.backref(at, name)
		return
	}
	if ch >= '1' && ch <= '9' {
		j := c.i
		for j < len(p) && p[j] >= '0' && p[j] <= '9' {
			j++
		}
		n, _ := strconv.Atoi(p[c.i:j])
		if n < 10 || n <= c.countGroups() {
			c.i = j
			c.backref(at, strconv.Itoa(n))
			return
		}
		if ch >= '8' {
			c.i++
			s := reLit(ch)
			c.emitAtom(s, s)
			return
		}
		v, k := 0, c.i
		for n := 0; n < 3 && k < len(p) && p[k] >= '0' && p[k] <= '7'; n++ {
			v = v*8 + int(p[k]-'0')
			k++
		}
		c.i = k
		if v > 0xFF {
			c.fail(c.i, "octal value is greater than \\377 in 8-bit non-UTF-8 mode")
			return
		}
		s := c.charLit(v)
		c.emitAtom(s, s)
		return
	}
	if v, ok := c.escapeValue(false); ok {
		if c.errMsg != "" {
			return
		}
		s := c.charLit(v)
		c.emitAtom(s, s)
		return
	}
	switch ch {
	case 'K', 'X', 'C':
		c.fail(c.i+1, "unsupported by postkit: \\"+string(ch))
		return
	}
	c.fail(c.i+1, "unrecognized character follows \\")
}

// countGroups counts the capturing groups of the whole pattern (PCRE decides
// between a back-reference and an octal escape by it).
func (c *rePCRE) countGroups() int {
	n := 0
	p := c.p
	inClass := false
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\':
			i++
		case inClass:
			if p[i] == ']' {
				inClass = false
			}
		case p[i] == '[':
			inClass = true
			if i+1 < len(p) && p[i+1] == ']' {
				i++
			}
		case p[i] == '(':
			if i+1 >= len(p) || p[i+1] != '?' && p[i+1] != '*' {
				n++
			} else if i+2 < len(p) && p[i+1] == '?' && (p[i+2] == '<' || p[i+2] == '\'' || p[i+2] == 'P') &&
				(i+3 >= len(p) || p[i+3] != '=' && p[i+3] != '!') {
				n++
			}
		}
	}
	return n
}

// backref emits a back-reference to a group given by number, relative
// number or name.
func (c *rePCRE) backref(at int, ref string) {
	var n int
	switch {
	case ref == "":
		c.fail(c.i, "a numbered reference must not be zero")
		return
	case ref[0] == '-' || ref[0] == '+':
		d, err := strconv.Atoi(ref[1:])
		if err != nil || d == 0 || ref[0] == '+' {
			c.fail(c.i, "a relative value of zero is not allowed")
			return
		}
		n = c.ngroups - d + 1
	case ref[0] >= '0' && ref[0] <= '9':
		var err error
		n, err = strconv.Atoi(ref)
		if err != nil || n == 0 {
			c.fail(c.i, "a numbered reference must not be zero")
			return
		}
	default:
		var ok bool
		if n, ok = c.names[ref]; !ok {
			c.fail(c.i, "reference to non-existent subpattern")
			return
		}
	}
	if n <= 0 || n > c.countGroups() {
		c.fail(c.i, "reference to non-existent subpattern")
		return
	}
	c.emitAtomLen(fmt.Sprintf(`\k<%d>`, n), "", -1)
	c.goSafe = false
}

// rePosixClassesPCRE are the POSIX classes PCRE2 knows, for the C locale.
var rePosixClassesPCRE = map[string]string{
	"alpha": `A-Za-z`, "upper": `A-Z`, "lower": `a-z`, "digit": `0-9`,
	"xdigit": `0-9A-Fa-f`, "space": reSpaceSet, "print": `\x{20}-\x{7E}`,
	"punct": `!-/:-@\[-\x{60}\{-~`, "graph": `!-~`, "cntrl": `\x{0}-\x{1F}\x{7F}`,
	"blank": `\t `, "alnum": `0-9A-Za-z`, "word": `0-9A-Za-z_`, "ascii": `\x{0}-\x{7F}`,
}

// class rewrites a character class starting at '['.
func (c *rePCRE) class() {
	p := c.p
	if c.i+1 < len(p) && (p[c.i+1] == ':' || p[c.i+1] == '.' || p[c.i+1] == '=') {
		d := p[c.i+1]
		j := c.i + 2
		for j < len(p) && (isAlnum(p[j]) || p[j] == '^') {
			j++
		}
		if j+1 < len(p) && p[j] == d && p[j+1] == ']' {
			c.fail(c.i, "POSIX named classes are supported only within a class")
			return
		}
	}
	c.i++
	var items strings.Builder
	neg := false
	if c.i < len(p) && p[c.i] == '^' {
		neg = true
		c.i++
	}
	first := true
	// pending is a single character that may start a range.
	pending := -1
	flush := func() {
		if pending >= 0 {
			items.WriteString(reClassChar(byte(pending)))
			pending = -1
		}
	}
	inRange := false
	addChar := func(v int) bool {
		if inRange {
			lo := pending
			pending = -1
			inRange = false
			if v < lo {
				c.fail(c.i, "range out of order in character class")
				return false
			}
			items.WriteString(reClassRange(byte(lo), byte(v)))
			return true
		}
		flush()
		pending = v
		return true
	}
	addSet := func(s2 string, unsafe bool) bool {
		if inRange {
			c.fail(c.i, "invalid range in character class")
			return false
		}
		flush()
		items.WriteString(s2)
		if unsafe {
			c.goSafe = false
		}
		return true
	}
	for {
		if c.i >= len(p) {
			c.fail(len(p), "missing terminating ] for character class")
			return
		}
		ch := p[c.i]
		if ch == ']' && !first {
			c.i++
			break
		}
		first = false
		switch {
		case ch == '[' && c.i+1 < len(p) && (p[c.i+1] == ':' || p[c.i+1] == '.' || p[c.i+1] == '='):
			d := p[c.i+1]
			end := strings.Index(p[c.i+2:], string(d)+"]")
			if end < 0 {
				// Not a POSIX class after all: a literal '['.
				c.i++
				if !addChar('[') {
					return
				}
				continue
			}
			name := p[c.i+2 : c.i+2+end]
			c.i += end + 4
			if d != ':' {
				c.fail(c.i, "POSIX collating elements are not supported")
				return
			}
			if strings.HasPrefix(name, "^") {
				c.fail(c.i, "unsupported by postkit: negated POSIX class [:^"+name[1:]+":]")
				return
			}
			set, ok := rePosixClassesPCRE[name]
			if !ok {
				c.fail(c.i-end-2, "unknown POSIX class name")
				return
			}
			if !addSet(set, false) {
				return
			}
		case ch == '\\':
			c.i++
			if c.i >= len(p) {
				c.fail(c.i, "\\ at end of pattern")
				return
			}
			e := p[c.i]
			switch e {
			case 'd', 'w', 'D', 'W':
				c.i++
				if !addSet(`\`+string(e), false) {
					return
				}
				continue
			case 's':
				c.i++
				if !addSet(reSpaceSet, false) {
					return
				}
				continue
			case 'S':
				c.i++
				// Go's \S would let \v through; .NET's agrees with PCRE.
				if !addSet(`\S`, true) {
					return
				}
				continue
			case 'h':
				c.i++
				if !addSet(`\t \x{F7A0}`, false) {
					return
				}
				continue
			case 'v':
				c.i++
				if !addSet(`\n\x0B\f\r\x{F785}`, false) {
					return
				}
				continue
			case 'H', 'V', 'p', 'P', 'N', 'R', 'X':
				c.fail(c.i+1, "unsupported by postkit: \\"+string(e)+" in a character class")
				return
			case 'Q':
				c.i++
				end := strings.Index(p[c.i:], `\E`)
				lit := p[c.i:]
				if end >= 0 {
					lit = p[c.i : c.i+end]
					c.i += end + 2
				} else {
					c.i = len(p)
				}
				for k := 0; k < len(lit); k++ {
					if !addChar(int(lit[k])) {
						return
					}
				}
				continue
			case 'E':
				c.i++
				continue
			}
			if !isAlnum(e) {
				c.i++
				if !addChar(int(e)) {
					return
				}
				continue
			}
			if e >= '1' && e <= '7' {
				v, k := 0, c.i
				for n := 0; n < 3 && k < len(p) && p[k] >= '0' && p[k] <= '7'; n++ {
					v = v*8 + int(p[k]-'0')
					k++
				}
				c.i = k
				if v > 0xFF {
					c.fail(c.i, "octal value is greater than \\377 in 8-bit non-UTF-8 mode")
					return
				}
				if !addChar(v) {
					return
				}
				continue
			}
			v, ok := c.escapeValue(true)
			if c.errMsg != "" {
				return
			}
			if !ok {
				c.fail(c.i+1, "unrecognized character follows \\")
				return
			}
			if !addChar(v) {
				return
			}
		case ch == '-' && pending >= 0 && !inRange && c.i+1 < len(p) && p[c.i+1] != ']':
			inRange = true
			c.i++
		default:
			c.i++
			if !addChar(int(ch)) {
				return
			}
		}
	}
	if inRange {
		// "[a-]": the hyphen is literal.
		flush()
		items.WriteString(`\-`)
	}
	flush()
	body := items.String()
	if neg {
		body = "[^" + body + "]"
	} else {
		body = "[" + body + "]"
	}
	c.emitAtom(body, body)
}

// group handles '(' and the (?...) constructs.
func (c *rePCRE) group() {
	p := c.p
	at := c.i
	c.i++
	push := func(open2, openGo string, kind ...bool) {
		g := rePCREGroup{flags: c.fl, start2: c.out2.Len(), startGo: c.outGo.Len(), firstLen: -2}
		if len(kind) == 2 {
			g.look, g.lb = kind[0], kind[1]
		}
		c.stack = append(c.stack, g)
		c.out2.WriteString(open2)
		c.outGo.WriteString(openGo)
		c.noAtom()
	}
	if c.i < len(p) && p[c.i] == '*' {
		c.fail(c.i, "unsupported by postkit: (*VERB)")
		return
	}
	if c.i >= len(p) || p[c.i] != '?' {
		if c.fl.n {
			push("(?:", "(?:")
		} else {
			c.ngroups++
			push("(", "(")
		}
		return
	}
	c.i++
	if c.i >= len(p) {
		c.fail(c.i, "quantifier does not follow a repeatable item")
		return
	}
	switch ch := p[c.i]; ch {
	case '#':
		end := strings.IndexByte(p[c.i:], ')')
		if end < 0 {
			c.fail(len(p), "missing ) after (?# comment")
			return
		}
		c.i += end + 1
		return
	case ':':
		c.i++
		push("(?:", "(?:")
		return
	case '>':
		c.i++
		push("(?>", "(?:")
		c.goSafe = false
		return
	case '=', '!':
		c.i++
		push("(?"+string(ch), "(?:", true, false)
		c.goSafe = false
		return
	case '|':
		c.fail(c.i, "unsupported by postkit: branch reset (?|...)")
		return
	case '(':
		c.fail(c.i, "unsupported by postkit: conditional (?(...)...)")
		return
	case 'R', '&', '+', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if ch != '-' || (c.i+1 < len(p) && p[c.i+1] >= '0' && p[c.i+1] <= '9') {
			c.fail(c.i, "unsupported by postkit: recursion or subroutine call")
			return
		}
	case 'C':
		c.fail(c.i, "unsupported by postkit: callout (?C...)")
		return
	case 'P':
		if c.i+1 < len(p) && p[c.i+1] == '=' {
			end := strings.IndexByte(p[c.i:], ')')
			if end < 0 {
				c.fail(len(p), "syntax error in subpattern name (missing terminator?)")
				return
			}
			name := p[c.i+2 : c.i+end]
			c.i += end + 1
			c.backref(at, name)
			return
		}
		if c.i+1 < len(p) && p[c.i+1] == '>' {
			c.fail(c.i, "unsupported by postkit: recursion or subroutine call")
			return
		}
		if c.i+1 < len(p) && p[c.i+1] == '<' {
			c.i++
			c.namedGroup('>')
			return
		}
		c.fail(c.i, "unrecognized character after (?P")
		return
	case '<':
		if c.i+1 < len(p) && (p[c.i+1] == '=' || p[c.i+1] == '!') {
			push("(?<"+string(p[c.i+1]), "(?:", true, true)
			c.i += 2
			c.goSafe = false
			return
		}
		c.namedGroup('>')
		return
	case '\'':
		c.namedGroup('\'')
		return
	}
	// Option setting: (?imsxnUJ-imsxnUJ) or (?...:...), (?^...).
	nf := c.fl
	on := true
	j := c.i
	if j < len(p) && p[j] == '^' {
		nf = rePCREFlags{}
		j++
	}
	for ; j < len(p); j++ {
		switch p[j] {
		case '-':
			on = false
			continue
		case 'i':
			nf.i = on
			continue
		case 'm':
			nf.m = on
			continue
		case 's':
			nf.s = on
			continue
		case 'x':
			nf.x = on
			continue
		case 'n':
			nf.n = on
			continue
		case 'U':
			nf.u = on
			continue
		case 'J':
			continue
		}
		break
	}
	if j >= len(p) || (p[j] != ')' && p[j] != ':') {
		c.fail(j, "unrecognized character after (? or (?-")
		return
	}
	flags := reFlagDiff(c.fl, nf)
	if p[j] == ')' {
		c.i = j + 1
		c.fl = nf
		if flags != "" {
			c.emit("(?" + flags + ")")
		}
		c.noAtom()
		return
	}
	c.i = j + 1
	open := "(?:"
	if flags != "" {
		open = "(?" + flags + ":"
	}
	push(open, open)
	c.fl = nf
}

// namedGroup reads "name>" (or "name'") after "(?<" / "(?P<" / "(?'".
func (c *rePCRE) namedGroup(closer byte) {
	p := c.p
	c.i++
	end := strings.IndexByte(p[c.i:], closer)
	if end <= 0 {
		c.fail(c.i, "syntax error in subpattern name (missing terminator?)")
		return
	}
	name := p[c.i : c.i+end]
	for k := 0; k < len(name); k++ {
		if !isAlnum(name[k]) && name[k] != '_' {
			c.fail(c.i+k, "syntax error in subpattern name (missing terminator?)")
			return
		}
	}
	c.i += end + 1
	c.ngroups++
	if _, dup := c.names[name]; dup {
		c.fail(c.i, "two named subpatterns have the same name (PCRE2_DUPNAMES not set)")
		return
	}
	c.names[name] = c.ngroups
	g := rePCREGroup{flags: c.fl, start2: c.out2.Len(), startGo: c.outGo.Len(), firstLen: -2}
	c.stack = append(c.stack, g)
	c.emit("(")
	c.noAtom()
}

// reFlagDiff renders the i, m and s changes from a to b as inline flags
// both engines understand.
func reFlagDiff(a, b rePCREFlags) string {
	var on, off string
	for _, f := range []struct {
		c    byte
		x, y bool
	}{{'i', a.i, b.i}, {'m', a.m, b.m}, {'s', a.s, b.s}} {
		if f.x != f.y {
			if f.y {
				on += string(f.c)
			} else {
				off += string(f.c)
			}
		}
	}
	if off != "" {
		return on + "-" + off
	}
	return on
}

// rePCRECompile compiles one pcre: pattern with its table flags
// (pcre_table(5): i on, m off, s on, x off by default; each letter toggles).
func rePCRECompile(label string, line int, pat, flags string, caps bool, opts *Options) (*reMatcher, bool) {
	fl := rePCREFlags{i: true, s: true}
	anchored, dollarEnd := false, false
	for k := 0; k < len(flags); k++ {
		switch flags[k] {
		case 'i':
			fl.i = !fl.i
		case 'm':
			fl.m = !fl.m
		case 's':
			fl.s = !fl.s
		case 'x':
			fl.x = !fl.x
		case 'U':
			fl.u = !fl.u
		case 'A':
			anchored = !anchored
		case 'E':
			dollarEnd = !dollarEnd
		case 'X':
			opts.Warnf(label, line, "ignoring obsolete regexp option \"X\"")
		}
	}
	re2s, goS, goSafe, ngroups, perr := rePCRERewrite(pat, fl, anchored, dollarEnd)
	if perr != nil {
		opts.Warnf(label, line, "error in regex at offset %d: %s", perr.off, perr.msg)
		return nil, false
	}
	re2, err := regexp2.Compile(re2s, regexp2.None)
	if err != nil {
		opts.Warnf(label, line, "error in regex at offset %d: %s", len(pat), strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		return nil, false
	}
	re2.MatchTimeout = reMatchTimeout
	m := &reMatcher{re2: re2, ngroups: ngroups}
	if goSafe {
		if re, err := regexp.Compile(goS); err == nil {
			m.goRE = re
			m.f = reBuildFilter(goS)
			m.goCaps = re.NumSubexp() == ngroups && reCapturesPlain(goS)
			m.split = reSplitDotStar(goS)
		}
	} else {
		m.f, m.sup = reSupersetFilter(re2s)
	}
	return m, true
}

// reFixedCount reports whether quantifier q is an exact count "{n}".
func reFixedCount(q string) (int, bool) {
	if len(q) < 3 || q[0] != '{' || strings.IndexByte(q, ',') >= 0 {
		return 0, false
	}
	n, err := strconv.Atoi(q[1 : len(q)-1])
	return n, err == nil
}
