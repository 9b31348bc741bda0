package contentcheck

import (
	"strings"

	"github.com/postkit-mail/postkit/restrictions"
)

// Kind is what a header_checks or body_checks rule asks for
// (header_checks(5) "TABLE FORMAT ... ACTIONS").
type Kind int

// The actions of header_checks(5). Dunno is the zero value: a line no rule
// matched, a DUNNO or OK result, or a value Postfix does not understand.
const (
	Dunno    Kind = iota // DUNNO, OK (legacy), or an unknown command
	Reject               // REJECT [text]: 550 (or 451 with a 4.x.x code); stops inspection
	Discard              // DISCARD [text]: accept and drop; stops inspection
	Hold                 // HOLD [text]: put the message on hold
	Filter               // FILTER transport:destination
	Redirect             // REDIRECT user@domain; stops inspection
	BCC                  // BCC user@domain (Postfix 3.0)
	Prepend              // PREPEND text: add a line before this one
	Replace              // REPLACE text: replace this line
	Ignore               // IGNORE: delete this line
	Strip                // STRIP [text]: delete this line and log it (Postfix 3.2)
	Warn                 // WARN [text]: log and go on
	Info                 // INFO [text]: log and go on (Postfix 3.0)
	Pass                 // PASS [text]: log and stop inspection (Postfix 3.2)
)

var kindNames = [...]string{"DUNNO", "REJECT", "DISCARD", "HOLD", "FILTER", "REDIRECT", "BCC",
	"PREPEND", "REPLACE", "IGNORE", "STRIP", "WARN", "INFO", "PASS"}

// String returns the command word of k.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "UNKNOWN"
}

// Action is a table value taken apart: the command word and the text after
// it (leading whitespace removed).
type Action struct {
	Kind Kind
	Text string
	// Reply is the SMTP reply for Reject: 550 with the text's RFC 3463 code
	// (default 5.7.1) or 451 when that code is 4.x.x; the default text is
	// "message content rejected".
	Reply restrictions.Reply
	// Unknown is set when the command word is not one Postfix knows; Kind
	// is then Dunno and the walker logs "unknown command in ... map".
	Unknown bool
	// Command is the command word as written in the table.
	Command string
}

// ParseAction turns a table value into an action as cleanup(8) does: the
// command word runs up to the first space or tab and is matched without
// regard to case; the rest, with leading whitespace removed, is the text.
// Whether the text is valid for the action (PREPEND needs a header in
// header tables, REDIRECT an '@') depends on where the rule fired; the
// Walker checks that and warns as Postfix does.
func ParseAction(value string) Action {
	cmd, text := value, ""
	if i := strings.IndexAny(value, " \t"); i >= 0 {
		cmd, text = value[:i], value[i:]
		text = strings.TrimLeft(text, " \t\n\r\v\f")
	}
	a := Action{Text: text, Command: cmd}
	switch {
	case strings.EqualFold(cmd, "REJECT"):
		a.Kind = Reject
		a.Reply = rejectReply(text)
	case strings.EqualFold(cmd, "WARN"):
		a.Kind = Warn
	case strings.EqualFold(cmd, "INFO"):
		a.Kind = Info
	case strings.EqualFold(cmd, "FILTER"):
		a.Kind = Filter
	case strings.EqualFold(cmd, "PASS"):
		a.Kind = Pass
	case strings.EqualFold(cmd, "DISCARD"):
		a.Kind = Discard
	case strings.EqualFold(cmd, "HOLD"):
		a.Kind = Hold
	case strings.EqualFold(cmd, "PREPEND"):
		a.Kind = Prepend
	case strings.EqualFold(cmd, "REPLACE"):
		a.Kind = Replace
	case strings.EqualFold(cmd, "REDIRECT"):
		a.Kind = Redirect
	case strings.EqualFold(cmd, "BCC"):
		a.Kind = BCC
	case strings.EqualFold(cmd, "STRIP"):
		a.Kind = Strip
	case strings.EqualFold(cmd, "IGNORE"):
		a.Kind = Ignore
	case strings.EqualFold(cmd, "DUNNO"), strings.EqualFold(cmd, "OK"):
		a.Kind = Dunno
	default:
		a.Kind = Dunno
		a.Unknown = true
	}
	return a
}

// rejectReply is the reply for "REJECT text": the text's leading RFC 3463
// code, or 5.7.1, is the DSN (dsn_prepend); a code that is not 4.x.x or
// 5.x.x becomes 4.x.x (Postfix warns "bad DSN action"); 4.x.x defers the
// message with 451, anything else rejects it with 550.
func rejectReply(text string) restrictions.Reply {
	if text == "" {
		return restrictions.Reply{Code: 550, DSN: "5.7.1", Text: "message content rejected"}
	}
	dsn, rest := splitDSN(text)
	if dsn == "" {
		dsn, rest = "5.7.1", text
	}
	if dsn[0] != '4' && dsn[0] != '5' {
		dsn = "4" + dsn[1:]
	}
	if dsn[0] == '4' {
		return restrictions.Reply{Code: 451, DSN: dsn, Text: rest}
	}
	return restrictions.Reply{Code: 550, DSN: dsn, Text: rest}
}

// splitDSN takes an RFC 3463 status code ("5.7.1") off the front of text,
// as Postfix's dsn_split does: class digit 2, 4 or 5, then two dot-separated
// numbers of one to three digits, then whitespace or the end.
func splitDSN(text string) (dsn, rest string) {
	if len(text) < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5') || text[1] != '.' {
		return "", text
	}
	i := 2
	for part := 0; part < 2; part++ {
		n := 0
		for i < len(text) && text[i] >= '0' && text[i] <= '9' {
			i++
			n++
		}
		if n < 1 || n > 3 {
			return "", text
		}
		if part == 0 {
			if i >= len(text) || text[i] != '.' {
				return "", text
			}
			i++
		}
	}
	if i < len(text) && text[i] != ' ' && text[i] != '\t' {
		return "", text
	}
	return text[:i], strings.TrimLeft(text[i:], " \t")
}

// hasAt reports whether s holds an '@', which REDIRECT and BCC need.
func hasAt(s string) bool { return strings.IndexByte(s, '@') >= 0 }
