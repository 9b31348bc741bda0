package maps

// cidr: tables, as described in cidr_table(5) (Postfix 3.7).
//
// A cidr table is a list of rules tried in file order; the first rule whose
// network contains the lookup key wins. Rules may be negated ("!pattern") and
// grouped in "if pattern" ... "endif" blocks. Postfix walks the rules one by
// one; postkit compiles them into a binary trie per address family so that a
// lookup costs about the same for ten rules as for a hundred thousand.
//
// How the trie answers "first match": every rule is a conjunction of literals
// ("key in P" or "key not in P", one for the rule itself and one for each
// enclosing if) over one address family. The prefixes that contain a key are
// the trie nodes on the key's path, so a rule holds when its positive
// literals lie on that path and its negative ones do not. A rule with a single
// positive literal (the common case) is kept at its prefix's node only as "the
// lowest rule number here"; any other rule is attached to the node of its
// longest positive literal (or to the family root when it has none) and its
// literals are checked one by one when the walk reaches that node. The walk
// keeps the lowest satisfied rule number and stops checking a node's rules
// once they cannot beat it.

import (
	"cmp"
	"context"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// cidrAddr is an address as 128 bits, most significant first. IPv4
// addresses occupy the top 32 bits of hi.
type cidrAddr struct{ hi, lo uint64 }

// cidrMask keeps the first n bits of a.
func cidrMask(a cidrAddr, n int) cidrAddr {
	switch {
	case n <= 0:
		return cidrAddr{}
	case n < 64:
		return cidrAddr{a.hi &^ (^uint64(0) >> n), 0}
	case n == 64:
		return cidrAddr{a.hi, 0}
	case n < 128:
		return cidrAddr{a.hi, a.lo &^ (^uint64(0) >> (n - 64))}
	}
	return a
}

// cidrCommon returns how many leading bits a and b share (0..128).
func cidrCommon(a, b cidrAddr) int {
	if x := a.hi ^ b.hi; x != 0 {
		return bits.LeadingZeros64(x)
	}
	return 64 + bits.LeadingZeros64(a.lo^b.lo)
}

// cidrBit returns bit i (0 = most significant) of a.
func cidrBit(a cidrAddr, i int) int {
	if i < 64 {
		return int(a.hi>>(63-i)) & 1
	}
	return int(a.lo>>(127-i)) & 1
}

// cidrContains reports whether the network p/n contains a.
func cidrContains(p cidrAddr, n int, a cidrAddr) bool {
	return cidrCommon(p, a) >= n
}

// cidrLiteral is one condition of a rule: the key is (or, negated, is not)
// inside net/bits.
type cidrLiteral struct {
	net  cidrAddr
	bits int
	neg  bool
}

// cidrRule is a compiled rule: all literals must hold for a key of family.
type cidrRule struct {
	lits   []cidrLiteral
	result string
}

// cidrNode is a node of a path-compressed binary trie. Nodes exist for every
// prefix some literal uses plus the branch points between them.
type cidrNode struct {
	net       cidrAddr
	bits      int
	child     [2]*cidrNode
	minSimple int32   // lowest rule number whose only literal is this prefix; -1 if none
	general   []int32 // other rules anchored here, ascending
	// subMin is the lowest rule number anchored at this node or below it.
	// A walk that already has a match at least as early stops there: in a
	// big table whose early rules are broad, most walks end near the top.
	subMin int32
}

// finish computes subMin for n and its subtree.
func (n *cidrNode) finish() int32 {
	if n == nil {
		return 1<<31 - 1
	}
	m := min(n.child[0].finish(), n.child[1].finish())
	if n.minSimple >= 0 {
		m = min(m, n.minSimple)
	}
	if len(n.general) > 0 {
		m = min(m, n.general[0])
	}
	n.subMin = m
	return m
}

// cidrTrie holds the rules of one address family.
type cidrTrie struct {
	root  *cidrNode
	width int        // 32 or 128
	slab  []cidrNode // nodes are carved from here: one allocation per 256
}

// newNode allocates a node; a table of 10,000 rules has some 20,000 nodes,
// and allocating them one by one was a third of the load time.
func (t *cidrTrie) newNode(net cidrAddr, n int) *cidrNode {
	if len(t.slab) == 0 {
		t.slab = make([]cidrNode, 256)
	}
	nn := &t.slab[0]
	t.slab = t.slab[1:]
	*nn = cidrNode{net: net, bits: n, minSimple: -1}
	return nn
}

// node returns the node for net/n, creating it (and a branch node) as needed.
func (t *cidrTrie) node(net cidrAddr, n int) *cidrNode {
	link := &t.root
	for {
		cur := *link
		if cur == nil {
			nn := t.newNode(net, n)
			*link = nn
			return nn
		}
		c := min(cidrCommon(net, cur.net), n, cur.bits)
		switch {
		case c == cur.bits && c == n:
			return cur
		case c == cur.bits:
			// cur is a proper prefix of net/n: descend.
			link = &cur.child[cidrBit(net, c)]
		case c == n:
			// net/n is a proper prefix of cur: insert above it.
			nn := t.newNode(net, n)
			nn.child[cidrBit(cur.net, n)] = cur
			*link = nn
			return nn
		default:
			// They diverge at bit c: a branch node with both below it.
			br := t.newNode(cidrMask(net, c), c)
			nn := t.newNode(net, n)
			br.child[cidrBit(net, c)] = nn
			br.child[cidrBit(cur.net, c)] = cur
			*link = br
			return nn
		}
	}
}

// cidrTable is one loaded version of a table.
type cidrTable struct {
	rules   []cidrRule
	v4      cidrTrie
	v6      cidrTrie
	anchors []cidrAnchor // until build
}

// add compiles the next rule, of the given family; build hangs it in the
// trie.
func (t *cidrTable) add(fam int, lits []cidrLiteral, result string) {
	// Simplify against the longest positive literal: other positive literals
	// that contain it and negative ones disjoint from it always hold; a
	// negative literal containing it can never hold.
	deep := -1
	for i, l := range lits {
		if !l.neg && (deep < 0 || l.bits > lits[deep].bits) {
			deep = i
		}
	}
	var kept []cidrLiteral
	if deep >= 0 {
		d := lits[deep]
		for i, l := range lits {
			if i == deep {
				continue
			}
			if l.bits <= d.bits && cidrContains(l.net, l.bits, d.net) { // l contains d
				if l.neg {
					return // key in d implies key in l: never holds
				}
				continue // implied by d
			}
			if !l.neg || !cidrContains(d.net, d.bits, l.net) { // d is longest: d contains l or they are disjoint
				// A positive literal not containing the longest one is
				// disjoint from it: never holds. A negative one disjoint
				// from d always holds.
				if !l.neg {
					return
				}
				continue
			}
			kept = append(kept, l) // a hole inside d
		}
	} else {
		kept = append([]cidrLiteral(nil), lits...) // lits is the caller's buffer
	}
	idx := int32(len(t.rules))
	t.rules = append(t.rules, cidrRule{lits: kept, result: result})
	a := cidrAnchor{fam: int8(fam), rule: idx}
	if deep >= 0 {
		a.net, a.bits, a.simple = lits[deep].net, lits[deep].bits, len(kept) == 0
	}
	t.anchors = append(t.anchors, a)
}

// cidrAnchor is where a rule hangs in its family's trie, waiting for build.
type cidrAnchor struct {
	net    cidrAddr
	bits   int
	fam    int8
	simple bool // the rule's only literal is this prefix
	rule   int32
}

// build creates the trie nodes and hangs the rules on them. The nodes are
// created in address order, not rule order: each insertion then walks the
// path the previous one just walked (still in the cache), and nodes near
// each other in the trie are near each other in memory. Loading a 10,000
// rule table spent a third of its time in cache misses of random-order
// insertion.
func (t *cidrTable) build() {
	order := make([]int32, len(t.anchors))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(x, y int32) int {
		a, b := &t.anchors[x], &t.anchors[y]
		if c := cmp.Compare(a.fam, b.fam); c != 0 {
			return c
		}
		if c := cmp.Compare(a.net.hi, b.net.hi); c != 0 {
			return c
		}
		if c := cmp.Compare(a.net.lo, b.net.lo); c != 0 {
			return c
		}
		return cmp.Compare(a.bits, b.bits)
	})
	nodes := make([]*cidrNode, len(t.anchors))
	for _, i := range order {
		a := &t.anchors[i]
		tr := &t.v4
		if a.fam == 6 {
			tr = &t.v6
		}
		nodes[i] = tr.node(a.net, a.bits)
	}
	// Rule order: minSimple keeps the first, general stays ascending.
	for i, a := range t.anchors {
		n := nodes[i]
		if !a.simple {
			n.general = append(n.general, a.rule)
		} else if n.minSimple < 0 {
			n.minSimple = a.rule
		}
	}
	t.anchors = nil
	t.v4.root.finish()
	t.v6.root.finish()
}

// lookup returns the first rule number that holds for a, or -1.
func (t *cidrTable) lookup(fam int, a cidrAddr) int32 {
	tr := &t.v4
	if fam == 6 {
		tr = &t.v6
	}
	best := int32(len(t.rules))
	for n := tr.root; n != nil; {
		if n.subMin >= best || cidrCommon(n.net, a) < n.bits {
			break
		}
		if n.minSimple >= 0 && n.minSimple < best {
			best = n.minSimple
		}
	rules:
		for _, r := range n.general {
			if r >= best {
				break
			}
			for _, l := range t.rules[r].lits {
				if cidrContains(l.net, l.bits, a) == l.neg {
					continue rules
				}
			}
			best = r
			break
		}
		if n.bits >= tr.width {
			break
		}
		n = n.child[cidrBit(a, n.bits)]
	}
	if best == int32(len(t.rules)) {
		return -1
	}
	return best
}

// cidrParseKey parses a lookup key. cidr_table(5): the key must be a bare
// IPv4 or IPv6 address; anything else (brackets, names, zones) never
// matches. The family follows from whether the key holds a colon, so an
// IPv4-mapped IPv6 address stays IPv6.
func cidrParseKey(s string) (fam int, a cidrAddr, ok bool) {
	if strings.IndexByte(s, ':') >= 0 {
		if strings.IndexByte(s, '%') >= 0 {
			return 0, a, false
		}
		ip, err := netip.ParseAddr(s)
		if err != nil || !ip.Is6() {
			return 0, a, false
		}
		b := ip.As16()
		return 6, cidrAddr{beUint64(b[:8]), beUint64(b[8:])}, true
	}
	v, ok := cidrParseV4(s)
	if !ok {
		return 0, a, false
	}
	return 4, cidrAddr{uint64(v) << 32, 0}, true
}

// cidrParseV4 parses dotted-quad IPv4 the way inet_pton(3) does: exactly four
// decimal octets, each at most 255, no leading zeros.
func cidrParseV4(s string) (uint32, bool) {
	var v uint32
	parts := 0
	for i := 0; i < len(s); {
		j := i
		n := 0
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			n = n*10 + int(s[j]-'0')
			j++
			if j-i > 3 {
				return 0, false
			}
		}
		if j == i || n > 255 || (s[i] == '0' && j-i > 1) {
			return 0, false
		}
		v = v<<8 | uint32(n)
		parts++
		if j == len(s) {
			break
		}
		if s[j] != '.' || parts == 4 {
			return 0, false
		}
		i = j + 1
		if i == len(s) {
			return 0, false
		}
	}
	return v, parts == 4
}

func beUint64(b []byte) uint64 {
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

// cidrParseAddr parses an address of the given family (inet_pton rules).
func cidrParseAddr(fam int, s string) (cidrAddr, bool) {
	if fam == 4 {
		v, ok := cidrParseV4(s)
		return cidrAddr{uint64(v) << 32, 0}, ok
	}
	_, a, ok := cidrParseKey(s)
	return a, ok && strings.IndexByte(s, ':') >= 0
}

// cidrFormat prints a network address as inet_ntop(3) in glibc does, for
// the "perhaps you should use" hint.
func cidrFormat(fam int, a cidrAddr) string {
	if fam == 4 {
		v := uint32(a.hi >> 32)
		return fmt.Sprintf("%d.%d.%d.%d", v>>24, v>>16&255, v>>8&255, v&255)
	}
	var w [8]uint16
	for i := 0; i < 4; i++ {
		w[i] = uint16(a.hi >> (48 - 16*i))
		w[4+i] = uint16(a.lo >> (48 - 16*i))
	}
	// Longest run of two or more zero words, first one on a tie.
	bestBase, bestLen := -1, 0
	for i := 0; i < 8; {
		if w[i] != 0 {
			i++
			continue
		}
		j := i
		for j < 8 && w[j] == 0 {
			j++
		}
		if j-i > bestLen {
			bestBase, bestLen = i, j-i
		}
		i = j
	}
	if bestLen < 2 {
		bestBase = -1
	}
	var b strings.Builder
	for i := 0; i < 8; i++ {
		if bestBase >= 0 && i >= bestBase && i < bestBase+bestLen {
			if i == bestBase {
				b.WriteByte(':')
			}
			continue
		}
		if i != 0 {
			b.WriteByte(':')
		}
		// An IPv4-compatible or IPv4-mapped address ends in dotted quad.
		if i == 6 && bestBase == 0 && (bestLen == 6 || (bestLen == 5 && w[5] == 0xffff)) {
			fmt.Fprintf(&b, "%d.%d.%d.%d", w[6]>>8, w[6]&255, w[7]>>8, w[7]&255)
			break
		}
		fmt.Fprintf(&b, "%x", w[i])
	}
	if bestBase >= 0 && bestBase+bestLen == 8 {
		b.WriteByte(':')
	}
	return b.String()
}

// cidrPattern parses "address", "address/len", optionally with the address
// in brackets, and returns a description of what is wrong in Postfix's words.
func cidrPattern(pat string) (fam int, net cidrAddr, n int, why string) {
	if strings.HasPrefix(pat, "[") {
		j := strings.IndexByte(pat, ']')
		if j < 0 {
			return 0, net, 0, fmt.Sprintf("missing ']' character after \"%s\"", pat)
		}
		after := pat[j+1:]
		if after != "" && after[0] != '/' {
			return 0, net, 0, fmt.Sprintf("garbage after \"%s\"", pat[:j+1])
		}
		pat = pat[1:j] + after
	}
	addr, mask, hasMask := strings.Cut(pat, "/")
	fam, width := 4, 32
	if strings.IndexByte(addr, ':') >= 0 {
		fam, width = 6, 128
	}
	if !hasMask {
		// An exact address must be a valid host address.
		a, ok := cidrParseAddr(fam, addr)
		if !ok {
			return 0, net, 0, fmt.Sprintf("bad address pattern: \"%s\"", pat)
		}
		return fam, a, width, ""
	}
	if mask == "" {
		return 0, net, 0, fmt.Sprintf("bad mask value in \"%s\"", pat)
	}
	var m int64
	for i := 0; i < len(mask); i++ {
		c := mask[i]
		if c < '0' || c > '9' {
			return 0, net, 0, fmt.Sprintf("bad mask value in \"%s\"", pat)
		}
		// Postfix uses atoi(3): strtol saturates, then the value is
		// truncated to an int. Reproduce that so odd masks agree.
		if m > (1<<63-1-9)/10 {
			m = 1<<63 - 1
		} else {
			m = m*10 + int64(c-'0')
		}
	}
	if ml := uint32(int32(m)); ml > uint32(width) {
		return 0, net, 0, fmt.Sprintf("bad mask length in \"%s\"", pat)
	} else {
		n = int(ml)
	}
	a, ok := cidrParseAddr(fam, addr)
	if !ok {
		return 0, net, 0, fmt.Sprintf("bad network value in \"%s\"", pat)
	}
	if masked := cidrMask(a, n); masked != a {
		return 0, net, 0, fmt.Sprintf("non-null host address bits in \"%s\", perhaps you should use \"%s/%d\" instead",
			pat, cidrFormat(fam, masked), n)
	}
	return fam, a, n, ""
}

// cidrLine is one logical line (or one inline rule) and where it started.
type cidrLine struct {
	text string
	line int
}

// cidrLogicalLines splits a file into logical lines (see logicalLines; a
// NUL is an ordinary character here), trimming trailing whitespace. A
// continuation with nothing before it is reported and dropped.
func cidrLogicalLines(data []byte, file string, warn func(Warning)) []cidrLine {
	// One string for the whole file: single-line rules (nearly all) are
	// substrings of it, so loading a big table costs no per-line copies.
	text := string(data)
	out := make([]cidrLine, 0, strings.Count(text, "\n")+1)
	logicalLines(text, false, func(s string, line int, orphan bool) {
		s = trimRightSpace(s)
		if orphan {
			// Postfix shows at most 30 characters of the line.
			if len(s) > 30 {
				s = s[:30] + "..."
			}
			warn(Warning{File: file, Msg: fmt.Sprintf("logical line must not start with whitespace: \"%s\"", s)})
			return
		}
		out = append(out, cidrLine{s, line})
	})
	return out
}

// cidrSplitInline splits Postfix 3.7's inline form "{ {rule}, {rule} }"
// into rules, numbered from 1 as Postfix numbers them in warnings.
func cidrSplitInline(name string) ([]cidrLine, error) {
	s := strings.TrimSpace(name)
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") || braceEnd(s) != len(s)-1 {
		return nil, fmt.Errorf("cidr map: syntax error after '}' in \"%s\"", name)
	}
	s = s[1 : len(s)-1]
	var out []cidrLine
	for {
		for s != "" && (s[0] == ',' || isSpace(s[0])) {
			s = s[1:]
		}
		if s == "" {
			return out, nil
		}
		// A token runs to the next separator outside braces.
		depth, i := 0, 0
		for ; i < len(s); i++ {
			c := s[i]
			if c == '{' {
				depth++
			} else if c == '}' {
				depth--
			} else if depth <= 0 && (c == ',' || isSpace(c)) {
				break
			}
		}
		tok := s[:i]
		s = s[i:]
		if tok[0] != '{' {
			return nil, fmt.Errorf("cidr map: no '{' at start of text in \"%s\"", tok)
		}
		end := braceEnd(tok)
		if end < 0 {
			return nil, fmt.Errorf("cidr map: missing '}' at end of text in \"%s\"", tok)
		}
		if end != len(tok)-1 {
			return nil, fmt.Errorf("cidr map: syntax error after '}' in \"%s\"", tok)
		}
		out = append(out, cidrLine{strings.TrimSpace(tok[1:end]), len(out) + 1})
	}
}

// cidrFold reports whether s starts with word (any case) not followed by a
// letter or digit, as Postfix recognises "if" and "endif".
func cidrFold(s, word string) bool {
	return len(s) >= len(word) && strings.EqualFold(s[:len(word)], word) &&
		(len(s) == len(word) || !isAlnum(s[len(word)]))
}

// cidrCompile turns logical lines into a table, warning about and skipping
// bad rules as cidr_table(5) describes.
func cidrCompile(lines []cidrLine, file string, warn func(Warning)) *cidrTable {
	t := &cidrTable{v4: cidrTrie{width: 32}, v6: cidrTrie{width: 128}}
	type cond struct {
		fam  int
		lit  cidrLiteral
		line int
	}
	var stack []cond
	var litBuf []cidrLiteral // reused: add copies the literals it keeps
	t.rules = make([]cidrRule, 0, len(lines))
	skip := func(line int, why string) {
		warn(Warning{File: "cidr map " + file, Line: line, Msg: why + ": skipping this rule"})
	}
	for _, l := range lines {
		s := l.text
		switch {
		case cidrFold(s, "if"):
			p := trimLeftSpace(s[2:])
			neg := false
			if strings.HasPrefix(p, "!") {
				neg, p = true, trimLeftSpace(p[1:])
			}
			if p == "" {
				skip(l.line, "no address pattern")
				continue
			}
			fam, net, n, why := cidrPattern(p)
			if why != "" {
				skip(l.line, why)
				continue
			}
			stack = append(stack, cond{fam, cidrLiteral{net, n, neg}, l.line})
		case cidrFold(s, "endif"):
			if trimLeftSpace(s[5:]) != "" {
				skip(l.line, "garbage after ENDIF")
				continue
			}
			if len(stack) == 0 {
				skip(l.line, "ENDIF without IF")
				continue
			}
			stack = stack[:len(stack)-1]
		default:
			p := s
			neg := false
			if strings.HasPrefix(p, "!") {
				neg, p = true, trimLeftSpace(p[1:])
			}
			if p == "" {
				skip(l.line, "no address pattern")
				continue
			}
			pat, value := p, ""
			for i := 0; i < len(p); i++ {
				if isSpace(p[i]) {
					pat, value = p[:i], trimLeftSpace(p[i:])
					break
				}
			}
			fam, net, n, why := cidrPattern(pat)
			if why != "" {
				skip(l.line, why)
				continue
			}
			if value == "" {
				skip(l.line, "no lookup result")
				continue
			}
			lits := litBuf[:0]
			ok := true
			for _, c := range stack {
				if c.fam != fam {
					ok = false
				}
				lits = append(lits, c.lit)
			}
			lits = append(lits, cidrLiteral{net, n, neg})
			litBuf = lits
			if !ok {
				continue // a condition of the other family never holds
			}
			t.add(fam, lits, value)
		}
	}
	for i := len(stack) - 1; i >= 0; i-- {
		warn(Warning{File: "cidr map " + file, Line: stack[i].line, Msg: "IF has no matching ENDIF"})
	}
	t.build()
	return t
}

// cidrMap is an open cidr: table. It reloads its file when it changes.
type cidrMap struct {
	name   string // the part after "cidr:"
	inline bool
	opts   Options
	cur    atomic.Pointer[cidrTable]
	watch  fileWatch
	mu     sync.Mutex // serialises reloads
}

// openCIDR opens "cidr:/path" or the inline "cidr:{ {rule}, ... }".
func openCIDR(ctx context.Context, name string, opts Options) (Map, error) {
	m := &cidrMap{name: name, opts: opts}
	if strings.HasPrefix(strings.TrimSpace(name), "{") {
		m.inline = true
		lines, err := cidrSplitInline(name)
		if err != nil {
			return nil, &Error{Map: "cidr:" + name, Err: err}
		}
		m.cur.Store(cidrCompile(lines, name, m.opts.warn))
		return m, nil
	}
	data, st, err := readFileStamped(name)
	if err != nil {
		return nil, &Error{Map: "cidr:" + name, Err: err}
	}
	m.watch.init(name, st)
	m.cur.Store(cidrCompile(cidrLogicalLines(data, name, m.opts.warn), name, m.opts.warn))
	return m, nil
}

// Lookup implements Map. The key is not folded: cidr tables compare
// addresses in binary form.
func (m *cidrMap) Lookup(ctx context.Context, key string) (string, bool, error) {
	if !m.inline && m.watch.due() {
		m.reload()
	}
	fam, a, ok := cidrParseKey(key)
	if !ok {
		return "", false, nil
	}
	t := m.cur.Load()
	if r := t.lookup(fam, a); r >= 0 {
		return t.rules[r].result, true, nil
	}
	return "", false, nil
}

// reload reparses the file when it has been replaced or modified. A file
// that cannot be read keeps the old rules and draws a warning.
func (m *cidrMap) reload() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if changed, _ := m.watch.changed(); !changed {
		return // a file that cannot be stat'ed keeps the old rules
	}
	data, st, err := readFileStamped(m.name)
	if err != nil {
		m.opts.warn(Warning{File: m.name, Msg: "cannot reload: " + err.Error()})
		return
	}
	m.watch.set(st)
	m.cur.Store(cidrCompile(cidrLogicalLines(data, m.name, m.opts.warn), m.name, m.opts.warn))
}

// Kind implements Kinder: cidr tables are pattern tables and are never asked
// derived keys.
func (m *cidrMap) Kind() Kind { return Pattern }

// Name implements Named.
func (m *cidrMap) Name() string { return "cidr:" + m.name }

// cidr tables deliberately do not implement Iterable: Postfix's
// "postmap -s cidr:..." fails with "sequence operation is not supported".
