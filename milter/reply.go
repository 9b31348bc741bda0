package milter

import (
	"fmt"
	"strings"

	"github.com/postkit-mail/postkit/restrictions"
)

// The replies Postfix gives when a milter rejects or defers without text
// (SMFIR_REJECT, SMFIR_TEMPFAIL) or when milter_default_action applies.
//
// When a milter fails, milter_default_action decides, and Postfix 3.7
// words the reply by the kind of failure (checked against Postfix):
// a connection that fails, breaks or times out gives replyCommReject or
// replyTempfail; a milter that breaks the protocol (a malformed reply, an
// unexpected packet) gives replyConfError for reject and tempfail alike.
var (
	replyReject     = restrictions.Reply{Code: 550, DSN: "5.7.1", Text: "Command rejected"}
	replyTempfail   = restrictions.Reply{Code: 451, DSN: "4.7.1", Text: "Service unavailable - try again later"}
	replyCommReject = restrictions.Reply{Code: 550, DSN: "5.5.0", Text: "Service unavailable"}
	replyConfError  = restrictions.Reply{Code: 451, DSN: "4.3.5", Text: "Server configuration problem - try again later"}
)

// ParseReply parses the SMTP reply of an SMFIR_REPLYCODE response: one or
// more lines "CODE-text" ... "CODE text", each ending in CRLF or LF (the
// last may have no line end), with an optional RFC 3463 enhanced status
// code after the code. The code must be 4xx or 5xx and the same on every
// line, and an enhanced code must be of the code's class (Postfix treats
// "452 5.2.2" as a malformed reply, a milter failure). The returned Reply
// has the first line's enhanced code ("" when the milter gave none: Postfix
// then sends the text without one) and the lines' texts joined by "\n".
func ParseReply(s string) (restrictions.Reply, error) {
	s = strings.TrimRight(s, "\r\n")
	if s == "" {
		return restrictions.Reply{}, fmt.Errorf("milter: empty reply")
	}
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	var rep restrictions.Reply
	texts := make([]string, 0, len(lines))
	for i, line := range lines {
		for j := 0; j < len(line); j++ {
			if c := line[j]; c < ' ' && c != '\t' || c == 0x7f {
				return restrictions.Reply{}, fmt.Errorf("milter: reply line %q has a control character", line)
			}
		}
		if len(line) < 3 || !isDigits(line[:3]) {
			return restrictions.Reply{}, fmt.Errorf("milter: reply line %q does not start with a 3-digit code", line)
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if i == 0 {
			if code < 400 || code > 599 {
				return restrictions.Reply{}, fmt.Errorf("milter: reply code %d is not 4xx or 5xx", code)
			}
			rep.Code = code
		} else if code != rep.Code {
			return restrictions.Reply{}, fmt.Errorf("milter: reply line %q: code differs from %d", line, rep.Code)
		}
		rest := line[3:]
		last := i == len(lines)-1
		switch {
		case rest == "":
		case rest[0] == '-' && !last:
			rest = rest[1:]
		case rest[0] == ' ':
			if !last {
				return restrictions.Reply{}, fmt.Errorf("milter: reply line %q ends the reply before its last line", line)
			}
			rest = rest[1:]
		default:
			return restrictions.Reply{}, fmt.Errorf("milter: reply line %q: want ' ' or '-' after the code", line)
		}
		dsn, text := splitDSN(rest)
		if i == 0 {
			rep.DSN = dsn
		}
		texts = append(texts, text)
	}
	if rep.DSN != "" && rep.DSN[0] != byte('0'+rep.Code/100) {
		return restrictions.Reply{}, fmt.Errorf("milter: reply %q: enhanced code %s does not match %d", lines[0], rep.DSN, rep.Code)
	}
	rep.Text = strings.Join(texts, "\n")
	return rep, nil
}

// splitDSN takes an enhanced status code "c.sss.ddd" (RFC 3463: class 2, 4
// or 5, subject and detail of 1 to 3 digits) off the front of text.
func splitDSN(text string) (dsn, rest string) {
	word, after, _ := strings.Cut(text, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.ContainsAny(parts[0], "245") {
		return "", text
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 || !isDigits(p) {
			return "", text
		}
	}
	return word, after
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
