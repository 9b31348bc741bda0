package imapserver

import (
	"bufio"
	"net"
	"strings"
)

type lineReader struct{ br *bufio.Reader }

func newLineReader(c net.Conn) *lineReader { return &lineReader{bufio.NewReader(c)} }

func (r *lineReader) line() string {
	s, _ := r.br.ReadString('\n')
	return s
}

// until reads lines up to and including the first that starts with prefix.
func (r *lineReader) until(prefix string) []string {
	var out []string
	for {
		s, err := r.br.ReadString('\n')
		out = append(out, s)
		if strings.HasPrefix(s, prefix) || err != nil {
			return out
		}
	}
}
