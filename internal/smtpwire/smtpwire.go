// Package smtpwire reads SMTP replies off the wire. It is shared by the
// test client of smtpserver/smtptest and by the Postfix oracle harness of
// internal/oracle, which cannot import each other.
package smtpwire

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrClosed is returned when the connection ends before a reply starts.
var ErrClosed = errors.New("connection closed")

// ReadReply reads one reply, single- or multi-line (RFC 5321 4.2):
// "CODE-text" lines followed by one "CODE text" (or bare "CODE") line, all
// with the same code. It returns the code and the text of each line.
func ReadReply(r *bufio.Reader) (code int, lines []string, err error) {
	for {
		line, rerr := r.ReadString('\n')
		if rerr != nil {
			if line == "" && len(lines) == 0 {
				return code, lines, ErrClosed
			}
			return code, lines, fmt.Errorf("incomplete reply %q: %w", line, rerr)
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if len(line) < 3 {
			return code, lines, fmt.Errorf("malformed reply line %q", line)
		}
		c, cerr := strconv.Atoi(line[:3])
		if cerr != nil || c < 100 || c > 599 || line[0] == '+' || line[0] == '-' {
			return code, lines, fmt.Errorf("malformed reply line %q", line)
		}
		if code != 0 && c != code {
			return code, lines, fmt.Errorf("reply line %q: code changed from %d", line, code)
		}
		code = c
		switch {
		case len(line) == 3:
			return code, append(lines, ""), nil
		case line[3] == ' ':
			return code, append(lines, line[4:]), nil
		case line[3] == '-':
			lines = append(lines, line[4:])
		default:
			return code, lines, fmt.Errorf("malformed reply line %q", line)
		}
	}
}
