package bounce

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/idna"

	"github.com/postkit-mail/postkit/config"
)

// Template is one notice template of bounce(5): headers for the notice
// and the text that opens its first part.
type Template struct {
	// Charset is the MIME charset of Text (Charset:).
	Charset string
	// From is the From: value, "Mail Delivery System <MAILER-DAEMON>";
	// an address without a domain gets @myorigin.
	From string
	// Subject is the Subject: of the notice to the sender.
	Subject string
	// PostmasterSubject is the Subject: of postmaster copies
	// (Postmaster-Subject:).
	PostmasterSubject string
	// Text is the message text, with $name forms (bounce(5)): main.cf
	// parameters, myhostname, mydomain, and delay_warning_time_UNIT and
	// maximal_queue_lifetime_UNIT with UNIT one of seconds, minutes,
	// hours, days, weeks. "$$" is a "$".
	Text string
}

// Templates are the four templates of a bounce_template_file.
type Templates struct {
	Failure Template // failure_template
	Delay   Template // delay_template
	Success Template // success_template
	Verify  Template // verify_template (address verification reports)
}

func (t *Templates) get(k Kind) *Template {
	switch k {
	case Delay:
		return &t.Delay
	case Success:
		return &t.Success
	}
	return &t.Failure
}

// The built-in templates. The header values are Postfix's, since users
// and filters look for them; the text is postkit's own.
var builtin = &Templates{
	Failure: Template{
		Charset:           "us-ascii",
		From:              "Mail Delivery System <MAILER-DAEMON>",
		Subject:           "Undelivered Mail Returned to Sender",
		PostmasterSubject: "Postmaster Copy: Undelivered Mail",
		Text: `This is the mail system at host $myhostname.

Your message could not be delivered to one or more of its
recipients. The recipients and the reasons are listed below;
your message, or its header section, is attached.

If you need help, write to the postmaster of this system and
include this report.

                   The mail system at $myhostname`,
	},
	Delay: Template{
		Charset:           "us-ascii",
		From:              "Mail Delivery System <MAILER-DAEMON>",
		Subject:           "Delayed Mail (still being retried)",
		PostmasterSubject: "Postmaster Warning: Delayed Mail",
		Text: `This is the mail system at host $myhostname.

This is only a warning: there is no need to send your message
again. It has not been delivered yet to the recipients listed
below, and delivery will be retried until the message is
$maximal_queue_lifetime_days day(s) old. The header section of
your message is attached.

If you need help, write to the postmaster of this system and
include this report.

                   The mail system at $myhostname`,
	},
	Success: Template{
		Charset:           "us-ascii",
		From:              "Mail Delivery System <MAILER-DAEMON>",
		Subject:           "Successful Mail Delivery Report",
		PostmasterSubject: "Successful Mail Delivery Report",
		Text: `This is the mail system at host $myhostname.

As you asked, this reports that your message was delivered to
the destinations listed below. A message delivered to a
mailbox will give you no further reports; a message passed on
to another system may still get reports from there.

                   The mail system at $myhostname`,
	},
	Verify: Template{
		Charset:           "us-ascii",
		From:              "Mail Delivery System <MAILER-DAEMON>",
		Subject:           "Mail Delivery Status Report",
		PostmasterSubject: "Mail Delivery Status Report",
		Text: `This is the mail system at host $myhostname.

Here is the delivery report that you asked for.

                   The mail system at $myhostname`,
	},
}

// DefaultTemplates returns a copy of the built-in templates.
func DefaultTemplates() *Templates {
	t := *builtin
	return &t
}

// LoadTemplates reads a bounce_template_file.
func LoadTemplates(path string) (*Templates, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bounce: bounce_template_file: %w", err)
	}
	defer f.Close()
	return ParseTemplates(path, f)
}

// ParseTemplates reads a template file in bounce(5) format; name labels
// errors. Templates the file leaves out keep the built-in ones.
//
//	failure_template = <<EOF
//	Charset: us-ascii
//	From: MAILER-DAEMON (Mail Delivery System)
//	Subject: Undelivered Mail Returned to Sender
//	Postmaster-Subject: Postmaster Copy: Undelivered Mail
//
//	text with $myhostname ...
//	EOF
//
// Outside a template, blank lines and lines starting with "#" are
// ignored. Template headers are single lines of ASCII, without $
// expansion; a template whose text is not ASCII needs a Charset other
// than us-ascii.
func ParseTemplates(name string, r io.Reader) (*Templates, error) {
	out := DefaultTemplates()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	lineNo := 0
	seen := map[string]bool{}
	fail := func(format string, args ...any) (*Templates, error) {
		return nil, fmt.Errorf("bounce: %s line %d: %s", name, lineNo, fmt.Sprintf(format, args...))
	}
	for sc.Scan() {
		lineNo++
		line := strings.TrimSuffix(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		tname, rest, ok := strings.Cut(line, "=")
		tname = strings.TrimSpace(tname)
		rest = strings.TrimSpace(rest)
		if !ok || !strings.HasPrefix(rest, "<<") {
			return fail("expected \"name = <<EOF\", found %q", trimmed)
		}
		word := strings.TrimSpace(rest[2:])
		if word == "" || strings.ContainsAny(word, " \t'\"") {
			return fail("bad end marker %q in %q", word, trimmed)
		}
		var t *Template
		switch tname {
		case "failure_template":
			t = &out.Failure
		case "delay_template":
			t = &out.Delay
		case "success_template":
			t = &out.Success
		case "verify_template":
			t = &out.Verify
		default:
			return fail("unknown template name %q", tname)
		}
		if seen[tname] {
			return fail("second %s", tname)
		}
		seen[tname] = true
		start := lineNo
		var body []string
		closed := false
		for sc.Scan() {
			lineNo++
			l := strings.TrimSuffix(sc.Text(), "\r")
			if l == word {
				closed = true
				break
			}
			body = append(body, l)
		}
		if !closed {
			lineNo = start
			return fail("%s: no %q line ends it", tname, word)
		}
		if err := t.setBody(body); err != nil {
			lineNo = start
			return fail("%s: %v", tname, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bounce: read %s: %w", name, err)
	}
	return out, nil
}

// setBody splits a template's lines into its headers and its text.
func (t *Template) setBody(lines []string) error {
	i := 0
	for ; i < len(lines); i++ {
		l := lines[i]
		if l == "" {
			i++ // the blank line after the headers
			break
		}
		hname, value, ok := strings.Cut(l, ":")
		if !ok || strings.ContainsAny(hname, " \t") {
			// No header section: the text starts here.
			break
		}
		value = strings.TrimSpace(value)
		if !isASCII(value) || strings.IndexByte(value, 0) >= 0 {
			return fmt.Errorf("header %q: not ASCII text", hname)
		}
		switch strings.ToLower(hname) {
		case "charset":
			// It goes into Content-Type as a MIME token (RFC 2045 5.1).
			if value == "" || strings.ContainsFunc(value, func(r rune) bool {
				return r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?=`, r)
			}) {
				return fmt.Errorf("Charset %q is not a MIME charset name", value)
			}
			t.Charset = value
		case "from":
			t.From = value
		case "subject":
			t.Subject = value
		case "postmaster-subject":
			t.PostmasterSubject = value
		default:
			return fmt.Errorf("unknown header %q", hname)
		}
	}
	t.Text = strings.Join(lines[i:], "\n")
	if strings.EqualFold(t.Charset, "us-ascii") && !isASCII(t.Text) {
		return fmt.Errorf("text is not ASCII, but Charset is %s", t.Charset)
	}
	if _, err := config.References(t.Text); err != nil {
		return fmt.Errorf("text: %w", err)
	}
	return nil
}

// ExpandText returns t's text with its $name forms expanded, as
// "postconf -b" shows it. A $name that is neither a bounce(5) variable nor
// a parameter is an error, as it is to Postfix.
func (s *Settings) ExpandText(t *Template) (string, error) {
	// Postfix shows myhostname and mydomain in UTF-8 when SMTPUTF8 is on
	// (bounce(5)).
	unicode := func(name string) string {
		if !s.SMTPUTF8Enable {
			return name
		}
		if u, err := idna.Punycode.ToUnicode(name); err == nil {
			return u
		}
		return name
	}
	lookup := func(name string) (string, bool) {
		for _, p := range []struct {
			prefix string
			d      time.Duration
		}{{"delay_warning_time_", s.DelayWarningTime}, {"maximal_queue_lifetime_", s.MaximalQueueLifetime}} {
			if unit, ok := strings.CutPrefix(name, p.prefix); ok {
				if v, ok := durationIn(p.d, unit); ok {
					return v, true
				}
			}
		}
		switch name {
		case "myhostname":
			return unicode(s.Hostname), true
		case "mydomain":
			if s.Params != nil {
				if v, ok := s.Params(name); ok {
					return unicode(v), true
				}
			}
			if _, d, ok := strings.Cut(s.Hostname, "."); ok {
				return unicode(d), true
			}
			return "", false
		case "mail_name":
			return s.mailName(), true
		case "myorigin":
			if s.Params == nil {
				return s.origin(), true
			}
		case "double_bounce_sender":
			if s.Params == nil {
				return s.DoubleBounceSender, true
			}
		case "bounce_size_limit":
			if s.Params == nil {
				return strconv.FormatInt(s.BounceSizeLimit, 10), true
			}
		}
		if s.Params != nil {
			return s.Params(name)
		}
		return "", false
	}
	var undefined []string
	e := config.Expander{Lookup: lookup, Undefined: func(name string) { undefined = append(undefined, name) }}
	text, err := e.Expand(t.Text)
	if err != nil {
		return "", fmt.Errorf("bounce: template text: %w", err)
	}
	if len(undefined) > 0 {
		return "", fmt.Errorf("bounce: template text: undefined $%s", undefined[0])
	}
	return text, nil
}

// expandText returns the expanded text as lines.
func (s *Settings) expandText(t *Template) ([]string, error) {
	text, err := s.ExpandText(t)
	if err != nil {
		return nil, err
	}
	if text == "" {
		return nil, nil
	}
	text = strings.ReplaceAll(text, "\r\n", "\n")
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = oneLine(l)
	}
	return lines, nil
}
