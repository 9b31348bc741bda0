package smtpclient

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
)

// Limits on what ReadReply accepts from a server, so a broken or hostile
// peer cannot make the client buffer without end. RFC 5321 4.5.3.1.5 caps
// a reply line at 512 octets; real servers exceed that a little, so the
// limit is generous.
const (
	MaxReplyLineLength = 4096
	MaxReplyLines      = 1000
)

// ErrMalformedReply is wrapped by the errors ReadReply returns for text
// that is not an SMTP reply.
var ErrMalformedReply = errors.New("malformed SMTP reply")

// Reply is one SMTP reply (RFC 5321 4.2), single- or multi-line.
type Reply struct {
	// Code is the three-digit reply code.
	Code int
	// Enhanced is the RFC 3463 status code the reply carries ("5.1.1"),
	// or "" when its first line has none (or one whose class does not
	// match the reply code).
	Enhanced string
	// Lines are the text of each line, without code and separator (and
	// with the enhanced code, when there is one, left in place).
	Lines []string
}

// String renders the reply the way Postfix's logs show one: every line
// with its code and separator, joined by a space ("550-5.7.1 a 550 5.7.1
// b").
func (r Reply) String() string {
	var b strings.Builder
	for i, l := range r.Lines {
		if i > 0 {
			b.WriteByte(' ')
		}
		sep := byte('-')
		if i == len(r.Lines)-1 {
			sep = ' '
		}
		fmt.Fprintf(&b, "%03d", r.Code)
		if l == "" && i == len(r.Lines)-1 {
			continue
		}
		b.WriteByte(sep)
		b.WriteString(l)
	}
	if len(r.Lines) == 0 {
		fmt.Fprintf(&b, "%03d", r.Code)
	}
	return b.String()
}

// Text is the reply's text without the codes: the lines joined by a
// space, the enhanced code of the first line removed.
func (r Reply) Text() string {
	var parts []string
	for _, l := range r.Lines {
		if r.Enhanced != "" {
			l = strings.TrimPrefix(l, r.Enhanced)
			l = strings.TrimPrefix(l, " ")
		}
		parts = append(parts, l)
	}
	return strings.Join(parts, " ")
}

// Positive reports a 2xx or 3xx reply.
func (r Reply) Positive() bool { return r.Code >= 200 && r.Code < 400 }

// Temporary reports a 4xx reply.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports a 5xx reply.
func (r Reply) Permanent() bool { return r.Code >= 500 }

// DSN is the reply's RFC 3463 status: its enhanced code, or X.0.0 from the
// reply code's class when it has none (as Postfix does for servers without
// ENHANCEDSTATUSCODES).
func (r Reply) DSN() string {
	if r.Enhanced != "" {
		return r.Enhanced
	}
	c := r.Code / 100
	if c < 2 || c > 5 {
		c = 5
	}
	if c == 3 {
		c = 2
	}
	return fmt.Sprintf("%d.0.0", c)
}

// ReadReply reads one reply: "CODE-text" lines and a final "CODE text" (or
// bare "CODE") line, all with the same code. A line may end in CRLF or a
// bare LF. Text that is not a reply, lines over MaxReplyLineLength and
// replies over MaxReplyLines give an error wrapping ErrMalformedReply; a
// connection that ends gives io.EOF or io.ErrUnexpectedEOF.
func ReadReply(br *bufio.Reader) (Reply, error) {
	var r Reply
	for {
		line, err := readLine(br)
		if err != nil {
			if len(r.Lines) > 0 && isEOF(err) {
				return r, fmt.Errorf("smtpclient: reply cut short: %w", errUnexpectedEOF)
			}
			return r, err
		}
		code, sep, text, err := splitReplyLine(line)
		if err != nil {
			return r, err
		}
		if len(r.Lines) > 0 && code != r.Code {
			return r, fmt.Errorf("%w: code changed from %d in %q", ErrMalformedReply, r.Code, clip(line))
		}
		r.Code = code
		r.Lines = append(r.Lines, text)
		if sep != '-' {
			r.Enhanced = parseEnhanced(r.Code, r.Lines[0])
			return r, nil
		}
		if len(r.Lines) >= MaxReplyLines {
			return r, fmt.Errorf("%w: more than %d lines", ErrMalformedReply, MaxReplyLines)
		}
	}
}

// readLine reads one line without its line end, refusing over-long ones.
func readLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		frag, err := br.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > MaxReplyLineLength+2 {
			return "", fmt.Errorf("%w: line longer than %d bytes", ErrMalformedReply, MaxReplyLineLength)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if len(buf) > 0 && isEOF(err) {
				return "", errUnexpectedEOF
			}
			return "", err
		}
		break
	}
	buf = buf[:len(buf)-1]
	if n := len(buf); n > 0 && buf[n-1] == '\r' {
		buf = buf[:n-1]
	}
	return string(buf), nil
}

// splitReplyLine parses "CODE", "CODE text" or "CODE-text".
func splitReplyLine(line string) (code int, sep byte, text string, err error) {
	if len(line) < 3 {
		return 0, 0, "", fmt.Errorf("%w: %q", ErrMalformedReply, clip(line))
	}
	for i := 0; i < 3; i++ {
		if line[i] < '0' || line[i] > '9' {
			return 0, 0, "", fmt.Errorf("%w: %q", ErrMalformedReply, clip(line))
		}
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if code < 200 || code > 599 {
		return 0, 0, "", fmt.Errorf("%w: code %d in %q", ErrMalformedReply, code, clip(line))
	}
	if len(line) == 3 {
		return code, ' ', "", nil
	}
	switch line[3] {
	case ' ', '-':
		return code, line[3], line[4:], nil
	}
	return 0, 0, "", fmt.Errorf("%w: %q", ErrMalformedReply, clip(line))
}

// parseEnhanced returns the RFC 3463 code at the start of text when its
// class agrees with the reply code (RFC 2034 section 4): "class.subject.detail"
// with a class of 2, 4 or 5, a subject of 1 to 3 digits and a detail of 1
// to 3 digits, followed by a space or the end of the line.
func parseEnhanced(code int, text string) string {
	end := strings.IndexByte(text, ' ')
	if end < 0 {
		end = len(text)
	}
	word := text[:end]
	parts := strings.Split(word, ".")
	if len(parts) != 3 {
		return ""
	}
	if len(parts[0]) != 1 || int(parts[0][0]-'0') != code/100 {
		return ""
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return ""
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return ""
			}
		}
	}
	return word
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
