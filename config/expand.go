package config

import (
	"fmt"
	"strconv"
	"strings"
)

// maxNesting is the depth of nested expansions after which expansion gives
// up with "unreasonable macro call nesting", as Postfix's mac_expand does
// (a parameter that refers to itself, directly or through others, would
// otherwise never end).
const maxNesting = 100

// maxReferences bounds the work of one expansion. Without it, values
// that each refer to the next twice ("a = $b$b", "b = $c$c", ...) take
// time exponential in their number; Postfix would run until it ran out of
// memory, a toolkit must answer.
const maxReferences = 1 << 14

// ExpandError is a syntax or nesting error found while expanding $name
// forms. Msg is the text Postfix prints as a warning, e.g.
// `truncated macro reference: "${a"`.
type ExpandError struct {
	Msg string
}

func (e *ExpandError) Error() string { return e.Msg }

// Expand expands every $ form in s (see Expander) with lookup supplying the
// values of names; a value found is inserted as is, without being expanded
// again. This is what the per-feature expanders need (forward_path, pipe(8)
// argv, default_rbl_reply): their attribute values come from mail and must
// not be read as $name forms. Undefined names expand to the empty string.
func Expand(s string, lookup func(name string) (string, bool)) (string, error) {
	e := Expander{Lookup: lookup}
	return e.Expand(s)
}

// Expander expands Postfix's $ forms (postconf(5), "$name" and the
// conditional forms; src: util/mac_expand.c, mac_parse.c):
//
//	$name ${name} $(name)     the value of name
//	$$                        a literal $
//	${name?value}             value if name is defined and non-empty
//	${name:value}             value if name is undefined or empty
//	${name?{v1}:{v2}}         v1 or v2 (the {} forms allow whitespace around them)
//	${{a} == {b} ? {v1} : {v2}}   also != < <= > >= (numeric when both sides are
//	                          all digits) and the compatibility-level comparisons
//	                          <level <=level >level >=level ==level !=level
//
// A comparison without ? or : yields "true" or "".
type Expander struct {
	// Lookup returns the value of a name and whether it is defined.
	Lookup func(name string) (string, bool)
	// Recursive expands looked-up values again, as main.cf parameters are.
	Recursive bool
	// Undefined, if set, is called with each undefined name used with the
	// plain $name form.
	Undefined func(name string)
}

// Expand returns s with every $ form replaced.
func (e *Expander) Expand(s string) (string, error) {
	x := &expansion{lookup: e.Lookup, recursive: e.Recursive, undefined: e.Undefined, refs: new(int)}
	x.parse(s)
	if x.err != nil {
		return x.out.String(), x.err
	}
	return x.out.String(), nil
}

// References returns the names s refers to in any $ form, including both
// branches of conditionals, in order of appearance (with repeats). It is how
// postconf decides which user-defined parameters are in use.
func References(s string) ([]string, error) {
	var names []string
	x := &expansion{scan: true, onName: func(n string) { names = append(names, n) }, refs: new(int)}
	x.parse(s)
	return names, x.err
}

// expansion is the state of one Expand call.
type expansion struct {
	lookup    func(string) (string, bool)
	recursive bool
	scan      bool // visit every branch, substitute nothing
	onName    func(string)
	undefined func(string)
	depth     int
	refs      *int // references expanded so far, shared with sub-expansions
	err       error
	out       strings.Builder
}

func (x *expansion) fail(format string, args ...any) {
	if x.err == nil {
		x.err = &ExpandError{Msg: fmt.Sprintf(format, args...)}
	}
}

func isNameByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

const expWhitespace = " \t\r\n"

func trim20(s string) string {
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

// parse splits s into literal text and $ references.
func (x *expansion) parse(s string) {
	var lit strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			lit.WriteByte('$')
			i += 2
			continue
		}
		if lit.Len() > 0 {
			x.literal(lit.String())
			lit.Reset()
			if x.err != nil {
				return
			}
		}
		i++
		var ref string
		if i < len(s) && (s[i] == '{' || s[i] == '(') {
			open, close := s[i], byte('}')
			if open == '(' {
				close = ')'
			}
			level, j := 1, i+1
			for level > 0 {
				if j >= len(s) {
					x.fail("truncated macro reference: \"%s\"", s)
					return
				}
				switch s[j] {
				case open:
					level++
				case close:
					level--
				}
				j++
			}
			ref, i = s[i+1:j-1], j
		} else {
			j := i
			for j < len(s) && isNameByte(s[j]) {
				j++
			}
			ref, i = s[i:j], j
		}
		if ref == "" {
			x.fail("empty macro name: \"%s\"", s)
			return
		}
		x.reference(ref)
		if x.err != nil {
			return
		}
	}
	if lit.Len() > 0 {
		x.literal(lit.String())
	}
}

func (x *expansion) enter(what string) bool {
	if x.depth > maxNesting {
		x.fail("unreasonable macro call nesting: \"%s\"", what)
		return false
	}
	x.depth++
	return true
}

func (x *expansion) literal(s string) {
	if !x.enter(s) {
		return
	}
	if !x.scan {
		x.out.WriteString(s)
	}
	x.depth--
}

// curly splits "{payload} rest" at the brace that balances the first one,
// and skips whitespace after it.
func (x *expansion) curly(s string) (payload, rest string, ok bool) {
	level := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			level++
		case '}':
			level--
			if level == 0 {
				return s[1:i], strings.TrimLeft(s[i+1:], expWhitespace), true
			}
		}
	}
	x.fail("unbalanced {} in attribute expression: \"%s\"", s)
	return "", "", false
}

// reference handles the text of one $name, ${...} or $(...).
func (x *expansion) reference(ref string) {
	if *x.refs++; *x.refs > maxReferences {
		x.fail("macro expansion too large: more than %d references", maxReferences)
		return
	}
	if !x.enter(ref) {
		return
	}
	defer func() { x.depth-- }()

	var (
		value   string
		defined bool
		op      byte
		cp      string
	)
	if t := strings.TrimLeft(ref, expWhitespace); strings.HasPrefix(t, "{") {
		var ok bool
		value, cp, ok = x.logical(t)
		if !ok {
			return
		}
		defined = true
		if cp != "" {
			if cp[0] != '?' && cp[0] != ':' {
				x.fail("\"?\" or \":\" expected at: \"...}>>>%s\"", trim20(cp))
				return
			}
			op, cp = cp[0], cp[1:]
		}
	} else {
		start := len(ref) - len(t)
		end := start
		for end < len(ref) && isNameByte(ref[end]) {
			end++
		}
		after := strings.TrimLeft(ref[end:], expWhitespace)
		if after != "" && after[0] != '?' && after[0] != ':' {
			x.fail("attribute name syntax error at: \"...%s>>>%s\"", ref[:end], trim20(ref[end:]))
			return
		}
		name := ref[start:end]
		if after != "" {
			op, cp = after[0], after[1:]
		}
		if x.scan {
			if x.onName != nil {
				x.onName(name)
			}
		} else if x.lookup != nil {
			value, defined = x.lookup(name)
		}
		if !defined && op == 0 && !x.scan && x.undefined != nil {
			x.undefined(name)
		}
	}

	nonEmpty := defined && value != ""
	switch op {
	case '?':
		branch, rest, ok := x.branch(cp)
		if !ok {
			return
		}
		if nonEmpty || x.scan {
			x.parse(branch)
			if x.err != nil {
				return
			}
		}
		if rest == "" {
			return
		}
		if rest[0] != ':' {
			x.fail("\":\" expected at: \"...%s}>>>%s\"", branch, trim20(rest))
			return
		}
		cp = rest[1:]
		fallthrough
	case ':':
		branch, rest, ok := x.branch(cp)
		if !ok {
			return
		}
		if !nonEmpty || x.scan {
			x.parse(branch)
			if x.err != nil {
				return
			}
		}
		if rest != "" {
			x.fail("unexpected input at: \"...%s}>>>%s\"", branch, trim20(rest))
		}
	default:
		if !nonEmpty || x.scan {
			return
		}
		if x.recursive {
			x.parse(value)
		} else {
			x.out.WriteString(value)
		}
	}
}

// branch reads the value of a "?" or ":" operator: "{value} rest" when it
// starts with a brace (after white space), otherwise all of s.
func (x *expansion) branch(s string) (branch, rest string, ok bool) {
	if t := strings.TrimLeft(s, expWhitespace); strings.HasPrefix(t, "{") {
		return x.curly(t)
	}
	return s, "", true
}

// The comparison operators of ${{a} OP {b} ...}.
var expOperators = map[string]bool{
	"==": true, "!=": true, "<": true, "<=": true, ">=": true, ">": true,
	"==level": true, "!=level": true, "<level": true, "<=level": true, ">=level": true, ">level": true,
}

// logical evaluates "{a} OP {b} rest"; the result is "true" or "".
func (x *expansion) logical(s string) (result, rest string, ok bool) {
	left, cp, ok := x.curly(s)
	if !ok {
		return "", "", false
	}
	n := 0
	for n < len(cp) && strings.IndexByte("<>!=?+-*/~&|%", cp[n]) >= 0 {
		n++
	}
	if strings.HasPrefix(cp[n:], "level") {
		n += len("level")
	}
	op := cp[:n]
	if !expOperators[op] {
		x.fail("\"==\" or \"!=\"\" or \"<\"\" or \"<=\"\" or \">=\"\" or \">\" expected at: \"...%s}>>>%s\"", left, trim20(cp))
		return "", "", false
	}
	cp = cp[n:]
	t := strings.TrimLeft(cp, expWhitespace)
	if !strings.HasPrefix(t, "{") {
		x.fail("\"{expression}\" expected at: \"...{%s} %s>>>%s\"", left, op, trim20(cp))
		return "", "", false
	}
	right, cp, ok := x.curly(t)
	if !ok {
		return "", "", false
	}
	if x.scan {
		// Names inside the operands count as references; nothing is
		// evaluated.
		x.parse(left)
		if x.err == nil {
			x.parse(right)
		}
		return "", cp, x.err == nil
	}
	l, r := x.sub(left), x.sub(right)
	if x.err != nil {
		return "", "", false
	}
	var cmp int
	if lvl := strings.TrimSuffix(op, "level"); lvl != op {
		a, okA := parseCompatLevel(l)
		if !okA {
			x.fail("malformed compatibility level syntax: \"%s\"", l)
			return "", "", false
		}
		b, okB := parseCompatLevel(r)
		if !okB {
			x.fail("malformed compatibility level syntax: \"%s\"", r)
			return "", "", false
		}
		cmp = compareLevels(a, b)
		op = lvl
	} else if allDigits(l) && allDigits(r) {
		a, errA := strconv.ParseInt(l, 10, 64)
		b, errB := strconv.ParseInt(r, 10, 64)
		if errA != nil || errB != nil {
			bad := l
			if errA == nil {
				bad = r
			}
			x.fail("mac_exp_eval: bad conversion: %s", bad)
			return "", "", false
		}
		switch {
		case a < b:
			cmp = -1
		case a > b:
			cmp = 1
		}
	} else {
		cmp = strings.Compare(l, r)
	}
	var truth bool
	switch op {
	case "==":
		truth = cmp == 0
	case "!=":
		truth = cmp != 0
	case "<":
		truth = cmp < 0
	case "<=":
		truth = cmp <= 0
	case ">":
		truth = cmp > 0
	case ">=":
		truth = cmp >= 0
	}
	if truth {
		return "true", cp, true
	}
	return "", cp, true
}

// sub expands an operand of a comparison with the same settings and
// nesting depth.
func (x *expansion) sub(s string) string {
	if x.err != nil {
		return ""
	}
	y := &expansion{lookup: x.lookup, recursive: x.recursive, undefined: x.undefined, depth: x.depth, refs: x.refs}
	y.parse(s)
	if y.err != nil {
		x.err = y.err
	}
	return y.out.String()
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseCompatLevel reads a compatibility level "major[.minor[.patch]]"
// (postconf(5) compatibility_level), e.g. "0", "2", "3.6".
func parseCompatLevel(s string) ([3]int64, bool) {
	var lv [3]int64
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return lv, false
	}
	for i, p := range parts {
		if !allDigits(p) {
			return lv, false
		}
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return lv, false
		}
		lv[i] = n
	}
	return lv, true
}

func compareLevels(a, b [3]int64) int {
	for i := range a {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}
