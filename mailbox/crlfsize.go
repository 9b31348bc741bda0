package mailbox

import (
	"bytes"
	"io"
	"strconv"
	"strings"
)

// CRLFSize returns the size of the message read from r as IMAP and POP3
// serve it: every line end CRLF. Stored messages end lines with LF, so it
// is the byte count plus one for each LF without a CR before it (a CRLF
// already in the file counts as is). IMAP's RFC822.SIZE and POP3's LIST
// size share it.
func CRLFSize(r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	lastCR := false
	for {
		k, err := r.Read(buf)
		b := buf[:k]
		n += int64(k)
		for len(b) > 0 {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				lastCR = b[len(b)-1] == '\r'
				break
			}
			if i == 0 && !lastCR || i > 0 && b[i-1] != '\r' {
				n++
			}
			lastCR = false
			b = b[i+1:]
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// KeyVSize reads Dovecot's ",W=<size>" field (the CRLF size) from a
// Maildir key (Message.Key), which a Dovecot delivery writes: the size
// without reading the file.
func KeyVSize(key string) (int64, bool) {
	_, rest, ok := strings.Cut(key, ",")
	for ok {
		var part string
		part, rest, ok = strings.Cut(rest, ",")
		if v, found := strings.CutPrefix(part, "W="); found {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				return n, true
			}
		}
	}
	return 0, false
}
