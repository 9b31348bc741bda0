package address

import (
	"errors"
	"fmt"
	"strings"
)

// The RFC 5322 section 3.2 lexical tokens, as Postfix's tok822 scanner sees
// them: atoms, quoted strings, domain literals, comments and one-character
// specials. Whitespace only separates tokens.
type tokKind uint8

const (
	tAtom tokKind = iota
	tQuoted
	tLiteral
	tComment
	tSpecial
)

type token struct {
	kind       tokKind
	ch         byte   // the character, for tSpecial
	val        string // internal form: atom/quoted text unescaped; literal with brackets
	start, end int    // byte offsets in the input
	spaceAfter bool   // whitespace (or a comment) follows the token
}

func (t token) isWord() bool   { return t.kind == tAtom || t.kind == tQuoted || t.kind == tLiteral }
func (t token) is(c byte) bool { return t.kind == tSpecial && t.ch == c }

// specials822 are RFC 5322 specials; they end an atom.
const specials822 = `()<>@,;:\".[]`

// maxTokens bounds the work done on one header value or path; longer input
// is rejected rather than parsed slowly.
const maxTokens = 10000

// scan822 splits s into tokens. It fails on an unterminated quoted string,
// comment or domain literal.
func scan822(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			if len(toks) > 0 {
				toks[len(toks)-1].spaceAfter = true
			}
			i++
			continue
		}
		if len(toks) >= maxTokens {
			return nil, fmt.Errorf("more than %d tokens", maxTokens)
		}
		start := i
		switch {
		case c == '(':
			depth := 0
			j := i
			for ; j < len(s); j++ {
				switch s[j] {
				case '\\':
					j++
					continue
				case '(':
					depth++
				case ')':
					depth--
				}
				if depth == 0 {
					break
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated comment starting at byte %d", start)
			}
			toks = append(toks, token{kind: tComment, val: s[i+1 : j], start: start, end: j + 1})
			if len(toks) > 1 {
				toks[len(toks)-2].spaceAfter = true
			}
			i = j + 1
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated quoted string starting at byte %d", start)
			}
			toks = append(toks, token{kind: tQuoted, val: b.String(), start: start, end: j + 1})
			i = j + 1
		case c == '[':
			var b strings.Builder
			b.WriteByte('[')
			j := i + 1
			for ; j < len(s) && s[j] != ']'; j++ {
				if s[j] == '[' {
					return nil, fmt.Errorf("'[' inside domain literal at byte %d", j)
				}
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated domain literal starting at byte %d", start)
			}
			b.WriteByte(']')
			toks = append(toks, token{kind: tLiteral, val: b.String(), start: start, end: j + 1})
			i = j + 1
		case c != '\\' && strings.IndexByte(specials822, c) >= 0:
			toks = append(toks, token{kind: tSpecial, ch: c, val: s[i : i+1], start: i, end: i + 1})
			i++
		default:
			// An atom; a backslash takes the next byte literally (tok822
			// does the same, so `x\y` is the atom "xy").
			var b strings.Builder
			j := i
			for ; j < len(s); j++ {
				d := s[j]
				if d == '\\' {
					if j+1 < len(s) {
						j++
						b.WriteByte(s[j])
					}
					continue
				}
				if d == ' ' || d == '\t' || d == '\r' || d == '\n' || strings.IndexByte(specials822, d) >= 0 {
					break
				}
				b.WriteByte(d)
			}
			toks = append(toks, token{kind: tAtom, val: b.String(), start: start, end: j})
			i = j
		}
	}
	return toks, nil
}

// Mailbox is one address found in a header address list (RFC 5322 section
// 3.4) or an address-mapping table result.
type Mailbox struct {
	// Name is the display name with quotes removed and words joined by
	// single spaces ("" when there is none).
	Name string
	// Address is the addr-spec in internal form. An empty angle address
	// "<>" gives the null Address.
	Address Address
	// Route holds the domains of an obsolete source route ("<@a,@b:u@c>"
	// gives ["a", "b"]); the route is not part of Address.
	Route []string
	// Group is the display name of the group the mailbox belongs to, or "".
	Group string
	// Start and End are the byte offsets in the parsed text of the address
	// itself (between the angle brackets when there are any), so that a
	// rewriter can replace it and keep names and comments as they were.
	Start, End int
}

// ParseList parses an RFC 5322 address list: mailboxes ("a@b.example",
// "Name <a@b.example>", "a@b.example (comment)"), groups
// ("team: a@x, b@y;"), and comments, which are ignored. As in Postfix's
// tok822 parser, two words next to each other with nothing but whitespace
// between them and no angle brackets around start a new address, so
// "a@x b@y" is two addresses, and an address without '@' is allowed (it has
// an empty Domain). Empty list elements (",,") are skipped. An unterminated
// quote, comment or literal, a '<' without '>', and stray specials are
// errors.
func ParseList(s string) ([]Mailbox, error) {
	toks, err := scan822(s)
	if err != nil {
		return nil, fmt.Errorf("address list: %w", err)
	}
	// Comments play no part in the structure.
	words := toks[:0:0]
	for _, t := range toks {
		if t.kind != tComment {
			words = append(words, t)
		}
	}
	var out []Mailbox
	group, inGroup := "", false
	i := 0
	for i < len(words) {
		t := words[i]
		if t.is(',') {
			i++
			continue
		}
		if t.is(';') && inGroup {
			group, inGroup = "", false
			i++
			continue
		}
		// Find the end of this element and whether it is a group start or
		// has an angle address.
		j, angle, colon := i, -1, -1
		sawAt := false
		for ; j < len(words); j++ {
			w := words[j]
			if w.is(',') || (w.is(';') && inGroup) {
				break
			}
			if w.is('<') && angle < 0 {
				angle = j
				k := j + 1
				for k < len(words) && !words[k].is('>') {
					k++
				}
				if k == len(words) {
					return nil, fmt.Errorf("address list: '<' at byte %d has no matching '>'", w.start)
				}
				j = k
				continue
			}
			if w.is('@') {
				sawAt = true
			}
			if w.is(':') && !inGroup && angle < 0 && !sawAt {
				colon = j
				break
			}
		}
		if colon >= 0 {
			name, err := phrase(words[i:colon])
			if err != nil {
				return nil, fmt.Errorf("address list: group name: %w", err)
			}
			group, inGroup = name, true
			i = colon + 1
			continue
		}
		elem := words[i:j]
		i = j
		if angle >= 0 {
			a := angle - (j - len(elem))
			name, err := phrase(elem[:a])
			if err != nil {
				return nil, fmt.Errorf("address list: display name: %w", err)
			}
			k := a + 1
			for !elem[k].is('>') {
				k++
			}
			if k+1 < len(elem) {
				return nil, fmt.Errorf("address list: unexpected %q after '>' at byte %d", elem[k+1].val, elem[k+1].start)
			}
			mb, err := routeAddr(elem[a+1 : k])
			if err != nil {
				return nil, fmt.Errorf("address list: %w", err)
			}
			mb.Name, mb.Group = name, group
			if k > a+1 {
				mb.Start, mb.End = elem[a+1].start, elem[k-1].end
			} else {
				mb.Start, mb.End = elem[k].start, elem[k].start
			}
			out = append(out, mb)
			continue
		}
		// Bare addr-specs, split where two words meet (tok822's missing
		// comma rule).
		for len(elem) > 0 {
			n := 1
			for n < len(elem) && !(elem[n-1].isWord() && elem[n].isWord()) {
				n++
			}
			a, err := addrSpec(elem[:n])
			if err != nil {
				return nil, fmt.Errorf("address list: %w", err)
			}
			out = append(out, Mailbox{Address: a, Group: group, Start: elem[0].start, End: elem[n-1].end})
			elem = elem[n:]
		}
	}
	return out, nil
}

// phrase decodes a display name: words joined by single spaces, with the
// obsolete '.' of RFC 5322 section 4.1 ("Johnny B. Goode") kept.
func phrase(toks []token) (string, error) {
	var b strings.Builder
	for k, t := range toks {
		switch {
		case t.isWord() && t.kind != tLiteral:
			if k > 0 && b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(t.val)
		case t.is('.'):
			b.WriteByte('.')
		default:
			return "", fmt.Errorf("unexpected %q at byte %d", t.val, t.start)
		}
	}
	return b.String(), nil
}

// routeAddr parses what is between '<' and '>': an optional source route
// "@a,@b:" and an addr-spec, or nothing (the null address).
func routeAddr(toks []token) (Mailbox, error) {
	var mb Mailbox
	if len(toks) == 0 {
		return mb, nil
	}
	hasColon := false
	for _, t := range toks {
		if t.is(':') {
			hasColon = true
		}
	}
	if toks[0].is('@') && hasColon {
		k := 0
		for k < len(toks) && !toks[k].is(':') {
			k++
		}
		if k == len(toks) {
			return mb, fmt.Errorf("source route at byte %d has no ':'", toks[0].start)
		}
		route, err := parseRoute(toks[:k])
		if err != nil {
			return mb, err
		}
		mb.Route = route
		toks = toks[k+1:]
		if len(toks) == 0 {
			return mb, errors.New("source route without a mailbox")
		}
	}
	a, err := addrSpec(toks)
	if err != nil {
		return mb, err
	}
	mb.Address = a
	return mb, nil
}

// parseRoute parses "@a,@b" (RFC 5321 A-d-l) into its domains.
func parseRoute(toks []token) ([]string, error) {
	var route []string
	for len(toks) > 0 {
		if !toks[0].is('@') {
			return nil, fmt.Errorf("source route: expected '@' at byte %d", toks[0].start)
		}
		k := 1
		for k < len(toks) && !toks[k].is(',') {
			k++
		}
		d, err := domainOf(toks[1:k])
		if err != nil {
			return nil, fmt.Errorf("source route: %w", err)
		}
		if d == "" {
			return nil, fmt.Errorf("source route: empty domain at byte %d", toks[0].start)
		}
		route = append(route, d)
		if k < len(toks) {
			k++ // the comma
		}
		toks = toks[k:]
	}
	return route, nil
}

// addrSpec joins the tokens of local-part "@" domain into an internal-form
// Address. The '@' that separates them is the last one; a local part may be
// empty ("@domain", as in address-mapping results) but a domain may not be
// after an '@'.
func addrSpec(toks []token) (Address, error) {
	at := -1
	for k := len(toks) - 1; k >= 0; k-- {
		if toks[k].is('@') {
			at = k
			break
		}
	}
	localToks := toks
	if at >= 0 {
		localToks = toks[:at]
	}
	var b strings.Builder
	for k, t := range localToks {
		if k > 0 && t.isWord() && localToks[k-1].isWord() {
			return Address{}, fmt.Errorf("missing '.' between words of local part at byte %d", t.start)
		}
		switch {
		case t.kind == tAtom || t.kind == tQuoted:
			b.WriteString(t.val)
		case t.is('.') || t.is('@'):
			b.WriteByte(t.ch)
		default:
			return Address{}, fmt.Errorf("unexpected %q in local part at byte %d", t.val, t.start)
		}
	}
	a := Address{Local: b.String()}
	if at < 0 {
		return a, nil
	}
	d, err := domainOf(toks[at+1:])
	if err != nil {
		return Address{}, err
	}
	if d == "" {
		return Address{}, fmt.Errorf("missing domain after '@' at byte %d", toks[at].start)
	}
	a.Domain = d
	return a, nil
}

// domainOf joins domain tokens: atoms and dots, or one domain literal,
// which may be followed by dots: Postfix's smtpd takes "u@[192.0.2.1]."
// (trivial-rewrite removes one trailing dot, as from "u@example.com.";
// rewrite's oracle tests send it), so the literal form is left for the
// domain check to judge as the host name form is.
func domainOf(toks []token) (string, error) {
	var b strings.Builder
	for k, t := range toks {
		if k > 0 && t.isWord() && toks[k-1].isWord() {
			return "", fmt.Errorf("missing '.' between words of domain at byte %d", t.start)
		}
		switch {
		case t.kind == tAtom || t.is('.'):
			b.WriteString(t.val)
		case t.kind == tLiteral && k == 0 && onlyDots(toks[1:]):
			b.WriteString(t.val)
		default:
			return "", fmt.Errorf("unexpected %q in domain at byte %d", t.val, t.start)
		}
	}
	return b.String(), nil
}

func onlyDots(toks []token) bool {
	for _, t := range toks {
		if !t.is('.') {
			return false
		}
	}
	return true
}

// FormatMailbox renders a mailbox in external form: `Name <local@domain>`
// with the name quoted when it is not a sequence of atoms, or the bare
// address when there is no name. Groups and routes are not rendered.
func FormatMailbox(m Mailbox) string {
	addr := m.Address.String()
	if m.Name == "" {
		if addr == "" {
			return "<>"
		}
		return addr
	}
	return quotePhrase(m.Name) + " <" + addr + ">"
}

// quotePhrase quotes a display name unless it is words of atom text
// separated by single spaces.
func quotePhrase(name string) string {
	plain := true
	for _, w := range strings.Split(name, " ") {
		if w == "" || strings.ContainsAny(w, specials822) || strings.ContainsFunc(w, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			plain = false
			break
		}
	}
	if plain {
		return name
	}
	var b strings.Builder
	quoteInto(&b, name)
	return b.String()
}
