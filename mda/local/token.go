package local

import (
	"bufio"
	"io"
	"strings"
)

// splitTokens splits an aliases(5) right-hand side, a .forward line or an
// :include: line into destinations in internal form, as Postfix's RFC 822
// tokenizer does for deliver_token_string(): elements are separated by
// commas, and by white space outside quotes and angle brackets ("a b" is two
// destinations); "Name <addr>" gives addr; (comments) are dropped; double
// quotes and backslash escapes are removed, so "|cmd arg" gives |cmd arg
// and "a b"@x gives a b@x.
func splitTokens(s string) []string {
	var out []string
	var cur strings.Builder
	var angle strings.Builder
	inAngle, haveAngle, has := false, false, false
	flush := func() {
		switch {
		case haveAngle:
			if a := strings.TrimSpace(angle.String()); a != "" {
				out = append(out, a)
			}
		case has:
			out = append(out, cur.String())
		}
		cur.Reset()
		angle.Reset()
		inAngle, haveAngle, has = false, false, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		w := &cur
		if inAngle {
			w = &angle
		}
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			has = true
		case c == '"':
			// A quoted string: its content is taken as is.
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				w.WriteByte(s[j])
			}
			i = j
			has = true
		case c == '(' && !inAngle:
			depth := 0
			for ; i < len(s); i++ {
				if s[i] == '\\' {
					i++
					continue
				}
				if s[i] == '(' {
					depth++
				} else if s[i] == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
		case c == '<' && !inAngle:
			inAngle, haveAngle = true, true
			angle.Reset()
		case c == '>' && inAngle:
			inAngle = false
		case c == ',' && !inAngle:
			flush()
		case (c == ' ' || c == '\t' || c == '\r' || c == '\n') && !inAngle:
			// White space ends an element unless an angle address
			// follows ("Name <addr>"): look ahead.
			rest := strings.TrimLeft(s[i:], " \t\r\n")
			if strings.Contains(firstElement(rest), "<") {
				continue
			}
			flush()
		default:
			w.WriteByte(c)
			has = true
		}
	}
	flush()
	return out
}

// firstElement returns s up to the first top-level comma.
func firstElement(s string) string {
	if i := strings.IndexByte(s, ','); i >= 0 {
		return s[:i]
	}
	return s
}

// readLogicalLines reads a .forward or :include: file as Postfix's
// readllines() does: lines that start with white space continue the
// previous one, and lines whose first non-space character is '#' are
// comments.
func readLogicalLines(r io.Reader) ([]string, error) {
	var lines []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && len(lines) > 0 {
			lines[len(lines)-1] += " " + t
			continue
		}
		lines = append(lines, t)
	}
	return lines, sc.Err()
}
