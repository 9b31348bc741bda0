package maps

// The per-rule prefilter of regexp: and pcre: tables.
//
// A header_checks or body_checks table is asked about every line of every
// message, and almost every rule fails on almost every line. Running each
// rule's regular expression to find that out is what made the tables slow,
// so each rule carries a reFilter: facts that every matching key must have,
// derived once from the pattern's parse tree, and cheap to test against a
// key that has been lowered and summarised once per lookup (reKeyInfo):
//
//   - a length range (an unanchored pattern needs at least its shortest
//     match; a pattern anchored at both ends bounds the key itself);
//   - literals, any one of which must occur in the ASCII-lowercased key
//     (alternations such as (money|cash|income) give a set; optional parts
//     and small classes are expanded, e.g. opt[- ]?in);
//   - literal prefixes for patterns anchored at the start of the key;
//   - byte classes of which the key must contain at least one byte, and for
//     patterns anchored at both ends the set of bytes the key may contain.
//
// A filter only ever says "cannot match"; when it passes the real engine
// decides. Rules that need the backtracking engine are analysed through a
// superset of their pattern written for Go's parser (reSuperset):
// lookarounds dropped, back-references replaced by the text of their group,
// atomic groups made plain, so that a key the superset cannot match cannot
// match the rule. TestRegexpPrefilter and the fuzz targets compare lookups
// with and without the filters.

import (
	"bytes"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
)

// reMaxSet bounds the size of literal sets built from alternations and
// classes.
const reMaxSet = 32

// reByteSet is a set of bytes.
type reByteSet [4]uint64

func (s *reByteSet) add(b byte)         { s[b>>6] |= 1 << (b & 63) }
func (s *reByteSet) has(b byte) bool    { return s[b>>6]&(1<<(b&63)) != 0 }
func (s *reByteSet) union(o *reByteSet) { s[0] |= o[0]; s[1] |= o[1]; s[2] |= o[2]; s[3] |= o[3] }
func (s *reByteSet) meets(o *reByteSet) bool {
	return s[0]&o[0]|s[1]&o[1]|s[2]&o[2]|s[3]&o[3] != 0
}
func (s *reByteSet) within(o *reByteSet) bool {
	return s[0]&^o[0]|s[1]&^o[1]|s[2]&^o[2]|s[3]&^o[3] == 0
}
func (s *reByteSet) full() bool {
	return s[0]&s[1]&s[2]&s[3] == ^uint64(0)
}

// reFilter is what every key matched by one pattern has.
type reFilter struct {
	never    bool // the pattern cannot match any key
	minLen   int
	maxLen   int      // -1: no bound (only set for patterns anchored at both ends)
	prefixes [][]byte // lowered; the key starts with one of them (nil: no condition)
	// linePrefix: a line of the key, not only its start, may begin with
	// one of prefixes ((?m)^).
	linePrefix bool
	anyOf      [][]byte    // lowered; the key contains one of them (nil: no condition)
	need       []reByteSet // the key contains a byte of each
	allow      *reByteSet  // every byte of the key is in it
	minRun     int         // the lowered key has a run of this many equal bytes
	words      []reWords   // reRepeatedWord holds for each
	runs       []reClassRun
	also       [][][]byte // more sets like anyOf, each required
	counts     []reCount
}

// reCount says: the lowered key holds byte c at least n times.
type reCount struct {
	c byte
	n int
}

// reKeyInfo is a key summarised for the filters.
type reKeyInfo struct {
	buf   []byte // reused for lower
	key   string
	lower []byte
	set   reByteSet
	run   int // reMaxRun, -1 until needed
}

func (ki *reKeyInfo) init(key string, buf []byte) {
	ki.key = key
	ki.run = -1
	low := append(buf[:0], key...)
	var set reByteSet
	for i, c := range low {
		set[c>>6] |= 1 << (c & 63)
		low[i] = reLowerTab[c]
	}
	ki.lower, ki.set = low, set
}

// reLowerTab lowers ASCII letters.
var reLowerTab = func() (t [256]byte) {
	for i := range t {
		t[i] = reLowerByte(byte(i))
	}
	return t
}()

// possible reports whether a key with this summary may match.
func (f *reFilter) possible(ki *reKeyInfo) bool {
	if f.never {
		return false
	}
	n := len(ki.lower)
	if n < f.minLen || f.maxLen >= 0 && n > f.maxLen {
		return false
	}
	if f.prefixes != nil {
		ok := false
		for _, p := range f.prefixes {
			if bytes.HasPrefix(ki.lower, p) {
				ok = true
				break
			}
		}
		if !ok && f.linePrefix {
			for i := bytes.IndexByte(ki.lower, '\n'); i >= 0 && !ok; {
				rest := ki.lower[i+1:]
				for _, p := range f.prefixes {
					if bytes.HasPrefix(rest, p) {
						ok = true
						break
					}
				}
				j := bytes.IndexByte(rest, '\n')
				if j < 0 {
					break
				}
				i += 1 + j
			}
		}
		if !ok {
			return false
		}
	}
	if f.allow != nil && !ki.set.within(f.allow) {
		return false
	}
	for i := range f.need {
		if !ki.set.meets(&f.need[i]) {
			return false
		}
	}
	if f.anyOf != nil && !reContainsAny(ki.lower, f.anyOf) {
		return false
	}
	for _, c := range f.counts {
		if bytes.Count(ki.lower, []byte{c.c}) < c.n {
			return false
		}
	}
	for _, set := range f.also {
		if !reContainsAny(ki.lower, set) {
			return false
		}
	}
	if f.minRun > 1 {
		if ki.run < 0 {
			ki.run = reMaxRun(ki.lower)
		}
		if ki.run < f.minRun {
			return false
		}
	}
	for i := range f.runs {
		if !f.runs[i].in(ki.key) {
			return false
		}
	}
	for i := range f.words {
		if !reRepeatedWord(ki, &f.words[i]) {
			return false
		}
	}
	return true
}

// reNode is what the analysis knows about one node of a parse tree.
type reNode struct {
	never    bool
	min, max int      // match length in bytes; max -1 unbounded
	exact    [][]byte // lowered: the node matches exactly these strings (nil: unknown)
	req      [][]byte // lowered: every match contains one of these (nil: none)
	need     []reByteSet
	runs     []reClassRun
	also     [][][]byte // more literal sets, each required like req
	chars    reByteSet  // bytes a match may contain
}

// reClassRun says: the key holds n consecutive bytes of set.
type reClassRun struct {
	set reByteSet
	n   int
}

func (r *reClassRun) in(key string) bool {
	run := 0
	for i := 0; i < len(key); i++ {
		if r.set.has(key[i]) {
			run++
			if run >= r.n {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

// reRuneByte maps a rune of a translated pattern back to the key byte it
// stands for; ok=false for runes no mapped key contains.
func reRuneByte(r rune) (byte, bool) {
	switch {
	case r >= 0 && r < 0x80:
		return byte(r), true
	case r >= rePUA+0x80 && r <= rePUA+0xFF:
		return byte(r - rePUA), true
	}
	return 0, false
}

func reLowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// reClassSet turns the rune ranges of a class into the byte set it can
// match in a mapped key.
func reClassSet(ranges []rune) reByteSet {
	var s reByteSet
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		for _, seg := range [][2]rune{{0, 0x7f}, {rePUA + 0x80, rePUA + 0xFF}} {
			a, b := max(lo, seg[0]), min(hi, seg[1])
			for r := a; r <= b; r++ {
				c, _ := reRuneByte(r)
				s.add(c)
			}
		}
	}
	return s
}

// reScore ranks a literal set as a filter: longer shortest members first,
// then fewer members. Sets with an empty member are useless (score -1).
func reScore(set [][]byte) (int, int) {
	if set == nil {
		return -1, 0
	}
	m := -1
	for _, s := range set {
		if m < 0 || len(s) < m {
			m = len(s)
		}
	}
	if m == 0 {
		return -1, 0
	}
	return m, -len(set)
}

func reBetter(a, b [][]byte) [][]byte {
	la, na := reScore(a)
	lb, nb := reScore(b)
	if lb > la || lb == la && nb > na {
		return b
	}
	return a
}

// reCross is the set of concatenations of a member of a with one of b, or
// nil when it would exceed reMaxSet.
func reCross(a, b [][]byte) [][]byte {
	if len(a)*len(b) > reMaxSet {
		return nil
	}
	out := make([][]byte, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			s := make([]byte, 0, len(x)+len(y))
			out = append(out, append(append(s, x...), y...))
		}
	}
	return reDedup(out)
}

func reDedup(set [][]byte) [][]byte {
	seen := make(map[string]bool, len(set))
	out := set[:0]
	for _, s := range set {
		if !seen[string(s)] {
			seen[string(s)] = true
			out = append(out, s)
		}
	}
	return out
}

var reAllBytes = func() reByteSet {
	var s reByteSet
	for i := range s {
		s[i] = ^uint64(0)
	}
	return s
}()

func reAddMax(a, b int) int {
	if a < 0 || b < 0 {
		return -1
	}
	return a + b
}

// reAnalyse computes what every match of re has.
func reAnalyse(re *syntax.Regexp) reNode {
	empty := reNode{exact: [][]byte{{}}}
	switch re.Op {
	case syntax.OpNoMatch:
		return reNode{never: true}
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return empty
	case syntax.OpLiteral:
		n := reNode{min: len(re.Rune), max: len(re.Rune)}
		lit := make([]byte, 0, len(re.Rune))
		for _, r := range re.Rune {
			c, ok := reRuneByte(r)
			if !ok {
				return reNode{never: true}
			}
			n.chars.add(c)
			if re.Flags&syntax.FoldCase != 0 {
				if 'a' <= c && c <= 'z' {
					n.chars.add(c - 'a' + 'A')
				} else if 'A' <= c && c <= 'Z' {
					n.chars.add(c - 'A' + 'a')
				}
			}
			lit = append(lit, reLowerByte(c))
		}
		n.exact = [][]byte{lit}
		n.req = n.exact
		return n
	case syntax.OpCharClass:
		s := reClassSet(re.Rune)
		if s == (reByteSet{}) {
			return reNode{never: true}
		}
		n := reNode{min: 1, max: 1, chars: s}
		if !s.full() {
			n.need = []reByteSet{s}
		}
		var low reByteSet
		for c := 0; c < 256; c++ {
			if s.has(byte(c)) {
				low.add(reLowerByte(byte(c)))
			}
		}
		var set [][]byte
		for c := 0; c < 256 && len(set) <= 8; c++ {
			if low.has(byte(c)) {
				set = append(set, []byte{byte(c)})
			}
		}
		if len(set) <= 8 {
			n.exact = set
			n.req = set
		}
		return n
	case syntax.OpAnyCharNotNL:
		n := reNode{min: 1, max: 1, chars: reAllBytes}
		n.chars[0] &^= 1 << '\n'
		return n
	case syntax.OpAnyChar:
		return reNode{min: 1, max: 1, chars: reAllBytes}
	case syntax.OpCapture:
		return reAnalyse(re.Sub[0])
	case syntax.OpStar, syntax.OpQuest, syntax.OpPlus, syntax.OpRepeat:
		sub := reAnalyse(re.Sub[0])
		lo, hi := 0, -1
		switch re.Op {
		case syntax.OpQuest:
			hi = 1
		case syntax.OpPlus:
			lo = 1
		case syntax.OpRepeat:
			lo, hi = re.Min, re.Max
		}
		if sub.never {
			if lo == 0 {
				return empty
			}
			return reNode{never: true}
		}
		n := reNode{min: sub.min * lo, chars: sub.chars}
		switch {
		case sub.max == 0:
			n.max = 0
		case hi < 0 || sub.max < 0:
			n.max = -1
		default:
			n.max = sub.max * hi
		}
		if lo >= 1 {
			n.req, n.need, n.runs, n.also = sub.req, sub.need, sub.runs, sub.also
		}
		if lo >= 2 && re.Sub[0].Op == syntax.OpCharClass && len(sub.need) == 1 {
			n.runs = []reClassRun{{sub.need[0], lo}}
		}
		if lo >= 2 && lo <= 8 && sub.exact != nil {
			// (ha){3,}: "hahaha".
			cur := [][]byte{{}}
			for k := 0; k < lo && cur != nil; k++ {
				cur = reCross(cur, sub.exact)
			}
			if l, _ := reScore(cur); l > 0 {
				n.also = append(n.also, cur)
				n.req = reBetter(n.req, cur)
			}
		}
		if sub.exact != nil && hi >= 0 && hi <= 4 {
			// x? and small fixed repeats: expand.
			var all [][]byte
			cur := [][]byte{{}}
			for k := 0; k <= hi && cur != nil; k++ {
				if k >= lo {
					all = append(all, cur...)
				}
				if k < hi {
					cur = reCross(cur, sub.exact)
				}
			}
			if cur != nil && len(all) <= reMaxSet {
				n.exact = reDedup(all)
				n.req = reBetter(n.req, n.exact)
			}
		}
		return n
	case syntax.OpConcat:
		n := reNode{}
		run := [][]byte{{}}
		n.exact = [][]byte{{}}
		// Every literal set a part of the sequence requires is required;
		// the best becomes req, the others also.
		add := func(set [][]byte) {
			if l, _ := reScore(set); l > 0 {
				n.also = append(n.also, set)
				n.req = reBetter(n.req, set)
			}
		}
		for _, s := range re.Sub {
			sn := reAnalyse(s)
			if sn.never {
				return reNode{never: true}
			}
			n.min += sn.min
			n.max = reAddMax(n.max, sn.max)
			n.chars.union(&sn.chars)
			n.need = append(n.need, sn.need...)
			n.runs = append(n.runs, sn.runs...)
			n.also = append(n.also, sn.also...)
			if n.exact != nil {
				if sn.exact == nil {
					n.exact = nil
				} else {
					n.exact = reCross(n.exact, sn.exact)
				}
			}
			if sn.exact == nil {
				add(sn.req)
				add(run)
				run = [][]byte{{}}
				continue
			}
			next := reCross(run, sn.exact)
			if next == nil {
				add(run)
				next = sn.exact
			}
			run = next
		}
		add(run)
		if n.exact != nil {
			add(n.exact)
		}
		if len(n.also) > 8 {
			n.also = n.also[:8]
		}
		if len(n.need) > 4 {
			n.need = n.need[:4]
		}
		if len(n.runs) > 2 {
			n.runs = n.runs[:2]
		}
		return n
	case syntax.OpAlternate:
		n := reNode{min: -1}
		n.exact = [][]byte{}
		n.req = [][]byte{}
		var need *reByteSet
		noNeed, first := false, true
		for _, s := range re.Sub {
			sn := reAnalyse(s)
			if sn.never {
				continue
			}
			if n.min < 0 || sn.min < n.min {
				n.min = sn.min
			}
			if first {
				n.max, first = sn.max, false
			} else if sn.max < 0 || n.max < 0 {
				n.max = -1
			} else if sn.max > n.max {
				n.max = sn.max
			}
			n.chars.union(&sn.chars)
			if n.exact != nil && sn.exact != nil && len(n.exact)+len(sn.exact) <= reMaxSet {
				n.exact = append(n.exact, sn.exact...)
			} else {
				n.exact = nil
			}
			r := sn.req
			if l, _ := reScore(r); l <= 0 {
				r = nil
			}
			if n.req != nil && r != nil && len(n.req)+len(r) <= reMaxSet {
				n.req = append(n.req, r...)
			} else {
				n.req = nil
			}
			// A byte class every alternative needs (the union of each
			// one's first).
			switch {
			case len(sn.need) == 0:
				noNeed = true
			case need == nil:
				s := sn.need[0]
				need = &s
			default:
				need.union(&sn.need[0])
			}
		}
		if n.min < 0 {
			return reNode{never: true}
		}
		if n.exact != nil {
			n.exact = reDedup(n.exact)
			n.req = reBetter(n.req, n.exact)
		}
		if n.req != nil {
			n.req = reDedup(n.req)
		}
		if need != nil && !noNeed && !need.full() {
			n.need = []reByteSet{*need}
		} else {
			n.need = nil
		}
		return n
	}
	// Anything else: no facts beyond "any bytes".
	return reNode{max: -1, chars: reAllBytes}
}

// reBuildFilter derives the filter of a Go-syntax pattern (a translated
// pattern, or a superset of one). It returns nil when nothing useful is
// known or the pattern does not parse.
func reBuildFilter(expr string) *reFilter {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil
	}
	n := reAnalyse(re)
	if n.never {
		return &reFilter{never: true}
	}
	f := &reFilter{minLen: n.min, maxLen: -1, need: n.need, runs: n.runs}
	if l, _ := reScore(n.req); l > 0 {
		f.anyOf = n.req
		for _, set := range n.also {
			if len(f.also) < 3 && !reSameSet(set, n.req) {
				f.also = append(f.also, set)
			}
		}
	}
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	// Bytes the top-level sequence needs several times (e.g.
	// .*\n.*\n.*\n): its parts match disjoint pieces of the key.
	var cnt [256]int
	for _, s := range subs {
		lit, k := s, 1
		switch {
		case s.Op == syntax.OpPlus && s.Sub[0].Op == syntax.OpLiteral:
			lit = s.Sub[0]
		case s.Op == syntax.OpRepeat && s.Sub[0].Op == syntax.OpLiteral:
			lit, k = s.Sub[0], s.Min
		}
		if lit.Op != syntax.OpLiteral {
			continue
		}
		for _, r := range lit.Rune {
			if c, ok := reRuneByte(r); ok {
				cnt[reLowerByte(c)] += k
			}
		}
	}
	for c, k := range cnt {
		if k >= 2 {
			f.counts = append(f.counts, reCount{byte(c), k})
		}
	}
	if len(subs) > 1 && subs[0].Op == syntax.OpBeginLine {
		// (?m)^X: the key starts with X or holds "\nX".
		if pre := reLeadingSet(subs[1:]); pre != nil {
			f.prefixes, f.linePrefix = pre, true
		}
	}
	if len(subs) > 1 && subs[0].Op == syntax.OpBeginText {
		// Literal prefixes after \A.
		if pre := reLeadingSet(subs[1:]); pre != nil {
			f.prefixes = pre
		}
		if subs[len(subs)-1].Op == syntax.OpEndText {
			f.maxLen = n.max
			if !n.chars.full() {
				a := n.chars
				f.allow = &a
			}
		}
	}
	if f.minLen == 0 && f.maxLen < 0 && f.anyOf == nil && f.prefixes == nil && len(f.need) == 0 && f.allow == nil && len(f.runs) == 0 && len(f.counts) == 0 {
		return nil
	}
	return f
}

// reBackFacts finds, in the top-level sequence of a superset written by
// reSuperset, two shapes of back-reference whose meaning the superset
// loses but a cheap scan of the key can check:
//
//   - (C)\N{k,} with C one character: a run of k+1 equal bytes (compared
//     ASCII-case-blind, which only loosens it);
//   - (W+)S+\N with W and S disjoint classes: a word repeated after white
//     space, e.g. (\w+)\s+\1.
func reBackFacts(sup string, f *reFilter) {
	re, err := syntax.Parse(sup, syntax.Perl)
	if err != nil {
		return
	}
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	refOf := func(x *syntax.Regexp, n string) bool {
		return x.Op == syntax.OpCapture && strings.HasPrefix(x.Name, "r"+n+"_")
	}
	for i, s := range subs {
		if s.Op != syntax.OpCapture || !strings.HasPrefix(s.Name, "g") {
			continue
		}
		n := s.Name[1:]
		if a := reAnalyse(s.Sub[0].Simplify()); !a.never && a.min == 1 && a.max == 1 {
			k := 0
			for _, t := range subs[i+1:] {
				if refOf(t, n) {
					k++
					continue
				}
				if (t.Op == syntax.OpRepeat || t.Op == syntax.OpPlus) && refOf(t.Sub[0], n) {
					if t.Op == syntax.OpPlus {
						k++
					} else {
						k += t.Min
					}
					continue
				}
				break
			}
			if k > 0 && k+1 > f.minRun {
				f.minRun = k + 1
			}
		}
		if i+2 < len(subs) && s.Sub[0].Op == syntax.OpPlus && s.Sub[0].Sub[0].Op == syntax.OpCharClass &&
			subs[i+1].Op == syntax.OpPlus && subs[i+1].Sub[0].Op == syntax.OpCharClass && refOf(subs[i+2], n) {
			w := reClassSet(s.Sub[0].Sub[0].Rune)
			sp := reClassSet(subs[i+1].Sub[0].Rune)
			// Disjoint even when case is ignored: then S+ cannot eat
			// into either copy of the word.
			if wf := reFoldSet(w); !wf.meets(&sp) {
				// A \b right after the repeat, with W the word
				// characters: the repeat ends a word.
				bound := i+3 < len(subs) && subs[i+3].Op == syntax.OpWordBoundary && w == reWordBytes
				f.words = append(f.words, reWords{w, sp, bound})
			}
		}
	}
}

// reWords is the (W+)S+\N shape; bound: a \b follows.
type reWords struct {
	w, sp reByteSet
	bound bool
}

// reWordBytes is \w: [0-9A-Za-z_].
var reWordBytes = func() reByteSet {
	var s reByteSet
	for c := 0; c < 128; c++ {
		if isAlnum(byte(c)) || c == '_' {
			s.add(byte(c))
		}
	}
	return s
}()

// reRepeatedWord reports whether the key holds a run of W bytes, a run of
// S bytes, and then again (ASCII-case-blind) the last L >= 1 bytes of the
// first run.
func reRepeatedWord(ki *reKeyInfo, rw *reWords) bool {
	low, key, w, sp := ki.lower, ki.key, &rw.w, &rw.sp
	for i := 1; i < len(key); i++ {
		if !sp.has(key[i]) || !w.has(key[i-1]) {
			continue
		}
		j := i
		for j < len(key) && sp.has(key[j]) {
			j++
		}
		a := 0
		for a < i && w.has(key[i-1-a]) {
			a++
		}
		for l := 1; l <= a && j+l <= len(key); l++ {
			if rw.bound && j+l < len(key) && w.has(key[j+l]) {
				continue
			}
			if bytes.Equal(low[i-l:i], low[j:j+l]) {
				return true
			}
		}
		i = j - 1
	}
	return false
}

// reMaxRun is the length of the longest run of equal bytes of a lowered
// key.
func reMaxRun(low []byte) int {
	best, run := 0, 0
	for i := range low {
		if i > 0 && low[i] == low[i-1] {
			run++
		} else {
			run = 1
		}
		best = max(best, run)
	}
	return best
}

// reSuperset rewrites a regexp2 pattern produced by this package's
// translators into Go syntax that matches every key the pattern matches
// (and maybe more): lookaround assertions are dropped, atomic groups become
// plain groups, back-references are replaced by the pattern of their group,
// and \G and \Z are dropped. It returns "" when the pattern uses something
// it does not know.
func reSuperset(expr string) string {
	// First pass: the text of each capturing group.
	type grp struct {
		start   int  // index of '('
		capture bool // numbered group
		drop    bool // lookaround
		behind  bool // positive lookbehind at the start of the match
		ahead   bool // positive lookahead
		atStart bool // opened where nothing can precede in a match
		num     int
	}
	groups := map[int]string{}
	var stack []grp
	ncap := 0
	var out strings.Builder
	// Groups are rendered into out; a stack of out offsets tracks where
	// each starts so that its final text can be recorded.
	var starts []int
	nref := 0
	multi := reMayMultiline(expr)
	// atStart: nothing but group openings and flags so far on this branch,
	// at the start of the pattern.
	atStart := true
	for i := 0; i < len(expr); {
		c := expr[i]
		if c != '(' && c != '|' {
			atStart = false
		}
		switch c {
		case '|':
			atStart = len(stack) == 0 || stack[len(stack)-1].atStart
			out.WriteByte(c)
			i++
		case '\\':
			if i+1 >= len(expr) {
				return ""
			}
			d := expr[i+1]
			switch {
			case d == 'k' && i+2 < len(expr) && expr[i+2] == '<':
				j := strings.IndexByte(expr[i:], '>')
				if j < 0 {
					return ""
				}
				n, err := strconv.Atoi(expr[i+3 : i+j])
				if err != nil {
					return ""
				}
				g, ok := groups[n]
				if !ok {
					return ""
				}
				nref++
				fmt.Fprintf(&out, "(?P<r%d_%d>%s)", n, nref, g)
				i += j + 1
			case d >= '1' && d <= '9':
				j := i + 1
				for j < len(expr) && expr[j] >= '0' && expr[j] <= '9' {
					j++
				}
				n, _ := strconv.Atoi(expr[i+1 : j])
				g, ok := groups[n]
				if !ok {
					return ""
				}
				nref++
				fmt.Fprintf(&out, "(?P<r%d_%d>%s)", n, nref, g)
				i = j
			case d == 'G' || d == 'Z':
				i += 2
			case d == 'x' && i+2 < len(expr) && expr[i+2] == '{', d == 'p' || d == 'P':
				j := strings.IndexByte(expr[i:], '}')
				if j < 0 {
					return ""
				}
				out.WriteString(expr[i : i+j+1])
				i += j + 1
			default:
				out.WriteString(expr[i : i+2])
				i += 2
			}
		case '[':
			// A class: copy up to its closing bracket.
			j := i + 1
			if j < len(expr) && expr[j] == '^' {
				j++
			}
			if j < len(expr) && expr[j] == ']' {
				j++
			}
			for j < len(expr) && expr[j] != ']' {
				if expr[j] == '\\' {
					j++
				} else if expr[j] == '[' && j+1 < len(expr) && expr[j+1] == ':' {
					k := strings.Index(expr[j+2:], ":]")
					if k >= 0 {
						j += k + 3
					}
				}
				j++
			}
			if j >= len(expr) {
				return ""
			}
			out.WriteString(expr[i : j+1])
			i = j + 1
		case '(':
			g := grp{start: i, atStart: atStart}
			rest := expr[i+1:]
			switch {
			case strings.HasPrefix(rest, "?:"):
				out.WriteString("(?:")
				i += 3
			case strings.HasPrefix(rest, "?>"):
				out.WriteString("(?:")
				i += 3
			case strings.HasPrefix(rest, "?="):
				g.drop, g.ahead = true, true
				out.WriteString("(?:")
				i += 3
			case strings.HasPrefix(rest, "?!"):
				g.drop = true
				out.WriteString("(?:")
				i += 3
			case strings.HasPrefix(rest, "?<="):
				// (?<=X)Y at the start of a match: the key holds XY,
				// so X may be consumed. Elsewhere X may overlap what
				// precedes it, and the assertion is dropped.
				g.behind = atStart
				g.drop = !atStart
				out.WriteString("(?:")
				i += 4
			case strings.HasPrefix(rest, "?<!"):
				g.drop = true
				out.WriteString("(?:")
				i += 4
			case strings.HasPrefix(rest, "?"):
				// Flag groups: (?i) (?i-s) (?i:...).
				j := 1
				for j < len(rest) && strings.IndexByte("imsnx-", rest[j]) >= 0 {
					j++
				}
				if j >= len(rest) {
					return ""
				}
				flags := strings.ReplaceAll(strings.ReplaceAll(rest[1:j], "n", ""), "x", "")
				if rest[j] == ')' {
					if flags != "" && flags != "-" {
						out.WriteString("(?" + flags + ")")
					}
					i += 1 + j + 1
					continue
				}
				if rest[j] != ':' {
					return ""
				}
				if flags == "" || flags == "-" {
					out.WriteString("(?:")
				} else {
					out.WriteString("(?" + flags + ":")
				}
				i += 1 + j + 1
			default:
				ncap++
				g.capture, g.num = true, ncap
				fmt.Fprintf(&out, "(?P<g%d>", ncap)
				i++
			}
			stack = append(stack, g)
			starts = append(starts, out.Len())
		case ')':
			if len(stack) == 0 {
				return ""
			}
			g := stack[len(stack)-1]
			st := starts[len(starts)-1]
			stack, starts = stack[:len(stack)-1], starts[:len(starts)-1]
			atStart = false
			if g.behind && i+1 < len(expr) && strings.IndexByte("*+?{", expr[i+1]) >= 0 {
				// A repeated lookbehind: consuming it could demand
				// more than the key holds.
				g.drop = true
			}
			if g.capture {
				// A back-reference matches what the group matched, under
				// the flags of the group: its text, made case-blind and
				// dot-all (looser, so still a superset), stands in. Texts
				// with anchors, whose meaning depends on (?m), are not
				// used.
				t := out.String()[st:]
				if !strings.Contains(t, "$") && !strings.Contains(strings.ReplaceAll(t, "[^", ""), "^") {
					groups[g.num] = "(?is:" + t + ")"
				}
			}
			if g.ahead && len(stack) == 0 && i == len(expr)-1 {
				// A lookahead that ends the pattern may as well
				// consume: nothing follows that it could overlap.
				g.drop = false
			}
			if g.drop {
				// Remove the assertion altogether: (?:) at its place.
				s := out.String()[:st]
				out.Reset()
				out.WriteString(s)
				out.WriteString(")")
			} else {
				out.WriteByte(')')
			}
			i++
		case '$':
			// regexp2's "$" without (?m) also matches before a final
			// newline; Go's does not. At the very end of the pattern
			// the newline may be consumed; elsewhere, or when (?m) may
			// be on, the assertion is dropped.
			if i == len(expr)-1 && len(stack) == 0 && !multi {
				out.WriteString(`(?:\n?\z)`)
			}
			i++
		default:
			out.WriteByte(c)
			i++
		}
	}
	if len(stack) != 0 {
		return ""
	}
	return out.String()
}

// reMayMultiline reports whether a pattern may turn on (?m) anywhere.
func reMayMultiline(expr string) bool {
	for i := 0; i+1 < len(expr); i++ {
		if expr[i] == '(' && expr[i+1] == '?' {
			for j := i + 2; j < len(expr) && strings.IndexByte("imsnx-", expr[j]) >= 0; j++ {
				if expr[j] == 'm' {
					return true
				}
			}
		}
	}
	return false
}

// reSupersetFilter is the filter of a pattern that runs on regexp2: that of
// its superset, plus the back-reference facts. The superset itself, compiled
// for Go's engine, is returned too: it is much faster than regexp2, and a
// key it does not match cannot match the rule.
func reSupersetFilter(re2Expr string) (*reFilter, *regexp.Regexp) {
	sup := reSuperset(re2Expr)
	if sup == "" {
		return nil, nil
	}
	supRE, err := regexp.Compile(sup)
	if err != nil {
		supRE = nil
	}
	return reSupersetFacts(sup), supRE
}

func reSupersetFacts(sup string) *reFilter {
	f := reBuildFilter(sup)
	if f == nil {
		f = &reFilter{maxLen: -1}
	}
	if f.never {
		return f
	}
	reBackFacts(sup, f)
	if f.minLen == 0 && f.maxLen < 0 && f.anyOf == nil && f.prefixes == nil && len(f.need) == 0 &&
		f.allow == nil && f.minRun == 0 && len(f.words) == 0 && len(f.runs) == 0 {
		return nil
	}
	return f
}

func reSameSet(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// reContainsAny reports whether low contains one of set.
func reContainsAny(low []byte, set [][]byte) bool {
	for _, l := range set {
		if len(l) == 1 {
			if bytes.IndexByte(low, l[0]) >= 0 {
				return true
			}
		} else if bytes.Contains(low, l) {
			return true
		}
	}
	return false
}

// reLeadingSet is the set of literal strings a sequence starts with, or
// nil.
func reLeadingSet(subs []*syntax.Regexp) [][]byte {
	pre := [][]byte{{}}
	for _, s := range subs {
		sn := reAnalyse(s)
		if sn.exact == nil {
			break
		}
		next := reCross(pre, sn.exact)
		if next == nil {
			break
		}
		pre = next
	}
	if l, _ := reScore(pre); l > 0 {
		return pre
	}
	return nil
}

// reCapturesPlain reports whether no capture group of a Go pattern sits
// under a repetition or is empty-able inside an alternation's scope, the
// cases where engines disagree on captures; elsewhere Go's leftmost-first
// captures are those of a backtracking engine such as PCRE.
func reCapturesPlain(expr string) bool {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return false
	}
	var walk func(r *syntax.Regexp, rep bool) bool
	walk = func(r *syntax.Regexp, rep bool) bool {
		switch r.Op {
		case syntax.OpCapture:
			if rep {
				return false
			}
		case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
			rep = true
		}
		for _, s := range r.Sub {
			if !walk(s, rep) {
				return false
			}
		}
		return true
	}
	return walk(re, false)
}

// reSplit is a pattern \A L .* R with (?s) dot: it matches exactly when
// the key starts with L and R matches somewhere after it. Go's engine
// backtracks through the greedy .* of such a pattern position by
// position, while an unanchored search for R skips ahead to R's literal
// prefix; header_checks rules ("^Received:.*with ESMTP") are mostly of
// this form.
type reSplit struct {
	lit  string // ASCII
	fold bool
	line bool // (?m)^ rather than \A
	rest *regexp.Regexp
}

func (s *reSplit) match(key string) bool {
	if !s.line {
		return s.matchAt(key)
	}
	// (?m)^: the first line that starts with L leaves the most room
	// for R, as .* crosses newlines.
	for p := 0; ; {
		if s.hasLit(key[p:]) {
			return s.rest.MatchString(key[p+len(s.lit):])
		}
		i := strings.IndexByte(key[p:], '\n')
		if i < 0 {
			return false
		}
		p += i + 1
	}
}

func (s *reSplit) matchAt(key string) bool {
	if !s.hasLit(key) {
		return false
	}
	return s.rest.MatchString(key[len(s.lit):])
}

// hasLit reports whether key starts with the literal.
func (s *reSplit) hasLit(key string) bool {
	if len(key) < len(s.lit) {
		return false
	}
	if s.fold {
		for i := 0; i < len(s.lit); i++ {
			if reLowerTab[key[i]] != reLowerTab[s.lit[i]] {
				return false
			}
		}
		return true
	}
	return key[:len(s.lit)] == s.lit
}

// reSplitDotStar recognises \A L .* R in a Go pattern. R may hold no
// empty-width assertion other than \z, since matched against the rest of
// the key it would see a different neighbourhood at its start.
func reSplitDotStar(expr string) *reSplit {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil || re.Op != syntax.OpConcat || len(re.Sub) < 4 {
		return nil
	}
	sub := re.Sub
	if sub[0].Op != syntax.OpBeginText && sub[0].Op != syntax.OpBeginLine || sub[1].Op != syntax.OpLiteral ||
		sub[2].Op != syntax.OpStar || sub[2].Sub[0].Op != syntax.OpAnyChar {
		return nil
	}
	lit := sub[1]
	b := make([]byte, 0, len(lit.Rune))
	for _, r := range lit.Rune {
		if r >= 0x80 {
			return nil
		}
		b = append(b, byte(r))
	}
	ok := true
	var walk func(r *syntax.Regexp)
	walk = func(r *syntax.Regexp) {
		switch r.Op {
		case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
			syntax.OpWordBoundary, syntax.OpNoWordBoundary:
			ok = false
		}
		for _, s := range r.Sub {
			walk(s)
		}
	}
	rest := &syntax.Regexp{Op: syntax.OpConcat, Sub: sub[3:]}
	walk(rest)
	if !ok {
		return nil
	}
	rre, err := regexp.Compile(rest.String())
	if err != nil {
		return nil
	}
	return &reSplit{lit: string(b), fold: lit.Flags&syntax.FoldCase != 0, line: sub[0].Op == syntax.OpBeginLine, rest: rre}
}

// reFoldSet adds the other ASCII case of every letter in s.
func reFoldSet(s reByteSet) reByteSet {
	for c := 'A'; c <= 'Z'; c++ {
		if s.has(byte(c)) || s.has(byte(c+'a'-'A')) {
			s.add(byte(c))
			s.add(byte(c + 'a' - 'A'))
		}
	}
	return s
}
