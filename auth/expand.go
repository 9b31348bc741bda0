package auth

// Dovecot's %-variables (2.3 syntax, doc.dovecot.org "Config variables"),
// as used in username_format, passwd-file paths and extra fields, and SQL
// queries: %u or %{user}, with optional modifiers between the % and the
// variable: L (lower case), U (upper case), R (reverse), and an
// [offset.]width substring ("%1n" is the first character of the user
// part, "%2.1n" the third). %% is a literal %.
//
// Variables: u user, n username (part before the first @), d domain
// (after it), s service, l lip, r rip, a lport, b rport, m mech,
// c secured ("secured" or empty), h home, and the long forms %{user},
// %{username}, %{domain}, %{service}, %{lip}, %{rip}, %{lport},
// %{rport}, %{mech}, %{secured}, %{home}, %{session}, %{orig_user}
// (the name the client gave, before username_format). An unknown variable
// or modifier is an error when the template is parsed, as Dovecot refuses
// the configuration.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// varTemplate is a parsed template.
type varTemplate struct {
	raw   string
	parts []varPart
}

type varPart struct {
	lit    string // literal text when name == ""
	name   string // long variable name
	lower  bool
	upper  bool
	rev    bool
	offset int
	width  int // 0: all
}

var shortVars = map[byte]string{
	'u': "user", 'n': "username", 'd': "domain", 's': "service",
	'l': "lip", 'r': "rip", 'a': "lport", 'b': "rport", 'm': "mech",
	'c': "secured", 'h': "home",
}

var longVars = []string{
	"user", "username", "domain", "service", "lip", "rip", "lport",
	"rport", "mech", "secured", "home", "session", "orig_user",
}

// parseTemplate parses a template; it never fails on text without %.
func parseTemplate(s string) (*varTemplate, error) {
	t := &varTemplate{raw: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, varPart{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			lit.WriteByte(c)
			continue
		}
		i++
		if i >= len(s) {
			return nil, fmt.Errorf("template %q ends with a lone %%", s)
		}
		if s[i] == '%' {
			lit.WriteByte('%')
			continue
		}
		var p varPart
		// Modifiers.
	mods:
		for ; i < len(s); i++ {
			switch s[i] {
			case 'L':
				p.lower = true
			case 'U':
				p.upper = true
			case 'R':
				p.rev = true
			default:
				break mods
			}
		}
		// [offset.]width
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i > start {
			n, err := strconv.Atoi(s[start:i])
			if err != nil || n > 1<<16 {
				return nil, fmt.Errorf("template %q: bad width %q", s, s[start:i])
			}
			if i < len(s) && s[i] == '.' {
				i++
				s2 := i
				for i < len(s) && s[i] >= '0' && s[i] <= '9' {
					i++
				}
				w, err := strconv.Atoi(s[s2:i])
				if err != nil || w > 1<<16 {
					return nil, fmt.Errorf("template %q: bad width after offset %d", s, n)
				}
				p.offset, p.width = n, w
			} else {
				p.width = n
			}
		}
		if i >= len(s) {
			return nil, fmt.Errorf("template %q ends inside a variable", s)
		}
		switch c := s[i]; {
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("template %q: %%{ without }", s)
			}
			name := s[i+1 : i+end]
			if !slices.Contains(longVars, name) {
				return nil, fmt.Errorf("template %q: unknown variable %%{%s}", s, name)
			}
			p.name = name
			i += end
		default:
			name, ok := shortVars[c]
			if !ok {
				return nil, fmt.Errorf("template %q: unknown variable or modifier %%%c", s, c)
			}
			p.name = name
		}
		flush()
		t.parts = append(t.parts, p)
	}
	flush()
	return t, nil
}

// hasVars reports whether the template refers to any variable.
func (t *varTemplate) hasVars() bool {
	for _, p := range t.parts {
		if p.name != "" {
			return true
		}
	}
	return false
}

// uses reports whether the template refers to the variable name.
func (t *varTemplate) uses(name string) bool {
	for _, p := range t.parts {
		if p.name == name {
			return true
		}
	}
	return false
}

// expand fills the template; each value goes through escape (nil: as is).
func (t *varTemplate) expand(v *varValues, escape func(string) string) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.name == "" {
			b.WriteString(p.lit)
			continue
		}
		val := v.get(p.name)
		if p.lower {
			val = strings.ToLower(val)
		}
		if p.upper {
			val = strings.ToUpper(val)
		}
		if p.rev {
			r := []rune(val)
			slices.Reverse(r)
			val = string(r)
		}
		if p.offset > 0 || p.width > 0 {
			r := []rune(val)
			off := min(p.offset, len(r))
			r = r[off:]
			if p.width > 0 && p.width < len(r) {
				r = r[:p.width]
			}
			val = string(r)
		}
		if escape != nil {
			val = escape(val)
		}
		b.WriteString(val)
	}
	return b.String()
}

// varValues are the values of one request.
type varValues struct {
	user     string // after username_format
	origUser string
	home     string
	mech     string
	info     ClientInfo
}

func (v *varValues) get(name string) string {
	switch name {
	case "user":
		return v.user
	case "username":
		n, _, _ := strings.Cut(v.user, "@")
		return n
	case "domain":
		_, d, _ := strings.Cut(v.user, "@")
		return d
	case "orig_user":
		if v.origUser == "" {
			return v.user
		}
		return v.origUser
	case "home":
		return v.home
	case "mech":
		return v.mech
	case "service":
		return v.info.Service
	case "session":
		return v.info.Session
	case "secured":
		if v.info.Secured {
			return "secured"
		}
		return ""
	case "lip":
		if v.info.LocalAddr.IsValid() {
			return v.info.LocalAddr.Addr().Unmap().String()
		}
	case "rip":
		if v.info.RemoteAddr.IsValid() {
			return v.info.RemoteAddr.Addr().Unmap().String()
		}
	case "lport":
		if v.info.LocalAddr.IsValid() {
			return strconv.Itoa(int(v.info.LocalAddr.Port()))
		}
	case "rport":
		if v.info.RemoteAddr.IsValid() {
			return strconv.Itoa(int(v.info.RemoteAddr.Port()))
		}
	}
	return ""
}
