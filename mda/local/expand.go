package local

import (
	"fmt"
	"strings"
)

// expandAttrs expands the $name forms of forward_path and luser_relay
// (Postfix's local_expand(3)): $name, ${name}, $(name), ${name?text} (text
// when name is defined), ${name:text} (text when it is not) and $$. An
// attribute value is inserted after every character outside filter
// (forward_expansion_filter) is replaced by '_'; it is not expanded again.
//
// undef is true when a plain reference named an undefined attribute (such
// as ${extension} for an address without one): forward_path skips such an
// element.
func expandAttrs(s string, attrs map[string]string, filter string) (out string, undef bool, err error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			return "", false, fmt.Errorf("truncated macro reference: %q", s)
		}
		i++
		switch s[i] {
		case '$':
			b.WriteByte('$')
			continue
		case '{', '(':
			closer := byte('}')
			if s[i] == '(' {
				closer = ')'
			}
			end := matching(s, i, s[i], closer)
			if end < 0 {
				return "", false, fmt.Errorf("truncated macro reference: %q", s)
			}
			inner := s[i+1 : end]
			i = end
			name, rest := inner, ""
			op := byte(0)
			if k := strings.IndexAny(inner, "?:"); k >= 0 {
				name, op, rest = inner[:k], inner[k], inner[k+1:]
			}
			if !validName(name) {
				return "", false, fmt.Errorf("bad macro name %q in %q", name, s)
			}
			v, ok := attrs[name]
			switch op {
			case 0:
				if !ok {
					undef = true
					continue
				}
				b.WriteString(filterChars(v, filter))
			case '?', ':':
				if ok == (op == '?') {
					sub, u, err := expandAttrs(rest, attrs, filter)
					if err != nil {
						return "", false, err
					}
					undef = undef || u
					b.WriteString(sub)
				}
			}
		default:
			j := i
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			if j == i {
				return "", false, fmt.Errorf("bad macro reference in %q", s)
			}
			v, ok := attrs[s[i:j]]
			if !ok {
				undef = true
			} else {
				b.WriteString(filterChars(v, filter))
			}
			i = j - 1
		}
	}
	return b.String(), undef, nil
}

// matching returns the index of the closer that ends the group opened at
// s[open], counting nested groups.
func matching(s string, open int, opener, closer byte) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case opener:
			depth++
		case closer:
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func isNameChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func validName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if !isNameChar(n[i]) {
			return false
		}
	}
	return true
}

// filterChars replaces every byte of v that is not in allowed with '_'
// (forward_expansion_filter, command_expansion_filter).
func filterChars(v, allowed string) string {
	if allowed == "" {
		return v
	}
	b := []byte(v)
	for i, c := range b {
		if strings.IndexByte(allowed, c) < 0 {
			b[i] = '_'
		}
	}
	return string(b)
}
