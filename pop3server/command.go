package pop3server

import (
	"errors"
	"fmt"
	"strings"
)

// Command is one parsed POP3 command line.
type Command struct {
	// Name is the keyword in upper case ("RETR").
	Name string
	// Args are the space-separated arguments (empty ones dropped).
	Args []string
	// Rest is everything after the keyword and one space, unsplit: PASS
	// takes it whole, since a password may contain spaces (RFC 1939 7
	// leaves PASS's argument as "the rest of the line" in practice;
	// Dovecot does the same).
	Rest string
}

// maxKeyword bounds a command keyword: RFC 1939 keywords are three or four
// characters, RFC 2449 extensions at most a few more.
const maxKeyword = 16

// ErrBadCommand is wrapped by ParseCommand's errors.
var ErrBadCommand = errors.New("pop3: bad command line")

// ParseCommand parses a command line without its CRLF (RFC 1939 3: a
// case-insensitive keyword, then arguments separated by single spaces;
// several spaces are tolerated). Keywords are ASCII letters; a NUL or other
// control character anywhere but a trailing CR is an error, so is an empty
// line.
func ParseCommand(line string) (Command, error) {
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return Command{}, fmt.Errorf("%w: empty line", ErrBadCommand)
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < ' ' && c != '\t' || c == 0x7f {
			return Command{}, fmt.Errorf("%w: control character 0x%02x", ErrBadCommand, c)
		}
	}
	name, rest, _ := strings.Cut(line, " ")
	if name == "" || len(name) > maxKeyword {
		return Command{}, fmt.Errorf("%w: bad keyword", ErrBadCommand)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return Command{}, fmt.Errorf("%w: bad keyword", ErrBadCommand)
		}
	}
	cmd := Command{Name: strings.ToUpper(name), Rest: rest}
	for _, f := range strings.Split(rest, " ") {
		if f != "" {
			cmd.Args = append(cmd.Args, f)
		}
	}
	return cmd, nil
}

// parseNumber reads a message number or line count: decimal digits only,
// at most 9 of them (no sign, no spaces), as RFC 1939's "msg" and "n".
func parseNumber(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
