package bounce

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/internal/maildate"
)

// notice is what build needs for one message.
type notice struct {
	kind       Kind
	msg        *Message
	rcpts      []Recipient
	class      string
	to         string // envelope and To: recipient
	envFrom    string // envelope sender
	postmaster bool   // a postmaster copy: no template text, Postmaster-Subject
	ret        Ret
	tmpl       *Template
}

// Postfix folds the text and Diagnostic-Code lines at 79 columns with a
// 4-space indent (bounce_notify_util.c).
const (
	wrapWidth  = 79
	wrapIndent = "    "
)

// build writes the complete notice.
func (s *Settings) build(n notice) ([]byte, Encoding, error) {
	m := n.msg
	now := s.now().In(s.loc())
	host := s.Hostname
	tmpl := n.tmpl

	// Charset and encodings as Postfix 3.7 chooses them: the original's
	// BODY type sets the encoding of the whole (none when the client
	// declared none); a us-ascii template goes out as utf-8 when
	// SMTPUTF8 is on or the original is 8-bit, since addresses and
	// reasons may then hold UTF-8; a non-ASCII charset makes it all 8bit.
	enc := ""
	switch m.Encoding {
	case Encoding7Bit:
		enc = "7bit"
	case Encoding8Bit:
		enc = "8bit"
	}
	charset := tmpl.Charset
	if charset == "" {
		charset = "us-ascii"
	}
	if strings.EqualFold(charset, "us-ascii") && (s.SMTPUTF8Enable || m.Encoding == Encoding8Bit || m.SMTPUTF8) {
		charset = "utf-8"
	}
	textEnc := ""
	if !strings.EqualFold(charset, "us-ascii") {
		textEnc, enc = "8bit", "8bit"
	}

	var body []byte
	attachFull := n.ret != RetHdrs && m.Size <= s.BounceSizeLimit
	orig, err := readOriginal(m, attachFull)
	if err != nil {
		return nil, 0, err
	}

	// QUEUEID.TIME/myhostname, as Postfix writes it, keeping only the
	// characters RFC 2046 5.1.1 allows in a boundary.
	boundary := strings.Map(func(r rune) rune {
		if r < 0x80 && (r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || strings.ContainsRune("'()+_,-./:=?", r)) {
			return r
		}
		return -1
	}, fmt.Sprintf("%s.%d/%s", m.QueueID, now.Unix(), host))
	// Postfix's boundary is predictable; should the returned message
	// hold the same line, make it unique so the MIME structure holds.
	for bytes.Contains(orig, []byte("--"+boundary)) {
		boundary += "=" + randomID()[:6]
	}

	var b bytes.Buffer
	b.Grow(len(orig) + len(orig)/16 + 8192)
	id := ""
	if s.NewID != nil {
		id = s.NewID()
	}
	date := maildate.Format(now)
	if id != "" {
		fmt.Fprintf(&b, "Received: by %s (%s)\r\n\tid %s; %s\r\n", host, s.mailName(), id, date)
	}
	fmt.Fprintf(&b, "Date: %s\r\n", date)
	fmt.Fprintf(&b, "From: %s\r\n", oneLine(s.fromHeader(tmpl.From)))
	subject := tmpl.Subject
	if n.postmaster {
		subject = tmpl.PostmasterSubject
	}
	fmt.Fprintf(&b, "Subject: %s\r\n", oneLine(subject))
	fmt.Fprintf(&b, "To: %s\r\n", oneLine(n.to))
	if n.postmaster {
		b.WriteString("Auto-Submitted: auto-generated\r\n")
	} else {
		// RFC 3834 5.
		b.WriteString("Auto-Submitted: auto-replied\r\n")
	}
	b.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n", boundary)
	if enc != "" {
		fmt.Fprintf(&b, "Content-Transfer-Encoding: %s\r\n", enc)
	}
	if id == "" {
		id = randomID()
	}
	fmt.Fprintf(&b, "Message-Id: <%s.%s@%s>\r\n", now.Format("20060102150405"), id, host)
	b.WriteString("\r\nThis is a MIME-encapsulated message.\r\n")

	// Part 1: the text for people (RFC 3462 1: the first part).
	fmt.Fprintf(&b, "\r\n--%s\r\n", boundary)
	b.WriteString("Content-Description: Notification\r\n")
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=%s\r\n", charset)
	if textEnc != "" {
		fmt.Fprintf(&b, "Content-Transfer-Encoding: %s\r\n", textEnc)
	}
	b.WriteString("\r\n")
	if !n.postmaster {
		text, err := s.expandText(tmpl)
		if err != nil {
			return nil, 0, err
		}
		for _, line := range text {
			b.WriteString(line)
			b.WriteString("\r\n")
		}
	}
	for _, r := range n.rcpts {
		b.WriteString("\r\n")
		line := "<" + address.Quote(r.Address) + ">"
		if r.Original != "" && r.Original != r.Address {
			line += " (expanded from <" + address.Quote(r.Original) + ">)"
		}
		line += ": " + r.Reason
		wrap(&b, line)
	}

	// Part 2: the delivery-status fields (RFC 3464 2.2, 2.3).
	fmt.Fprintf(&b, "\r\n--%s\r\n", boundary)
	b.WriteString("Content-Description: Delivery report\r\n")
	if m.SMTPUTF8 {
		// RFC 6533 6.2.
		b.WriteString("Content-Type: message/global-delivery-status\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	} else {
		b.WriteString("Content-Type: message/delivery-status\r\n\r\n")
	}
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\r\n", host)
	if m.ENVID != "" {
		fmt.Fprintf(&b, "Original-Envelope-Id: %s\r\n", oneLine(m.ENVID))
	}
	fmt.Fprintf(&b, "X-%s-Queue-ID: %s\r\n", s.mailName(), oneLine(m.QueueID))
	fmt.Fprintf(&b, "X-%s-Sender: rfc822; %s\r\n", s.mailName(), quote8(s.returnPath(m.Sender)))
	if s.ReceivedFromMTA && (m.Client.Name != "" || m.Client.Addr != "") {
		name := m.Client.Name
		if name == "" {
			name = "unknown"
		}
		fmt.Fprintf(&b, "Received-From-MTA: dns; %s (%s [%s])\r\n", oneLine(m.Client.HELO), oneLine(name), oneLine(m.Client.Addr))
	}
	if !m.Arrival.IsZero() {
		fmt.Fprintf(&b, "Arrival-Date: %s\r\n", maildate.Format(m.Arrival.In(s.loc())))
	}
	for _, r := range n.rcpts {
		b.WriteString("\r\n")
		if m.SMTPUTF8 && !isASCII(r.Address) {
			// RFC 6533 3: a utf-8 address type for a UTF-8 address.
			fmt.Fprintf(&b, "Final-Recipient: utf-8; %s\r\n", oneLine(r.Address))
		} else {
			fmt.Fprintf(&b, "Final-Recipient: rfc822; %s\r\n", oneLine(address.Quote(r.Address)))
		}
		orcpt := r.ORCPT
		if orcpt == "" {
			o := r.Original
			if o == "" {
				o = r.Address
			}
			orcpt = "rfc822;" + address.Quote(o)
		}
		fmt.Fprintf(&b, "Original-Recipient: %s\r\n", oneLine(orcpt))
		fmt.Fprintf(&b, "Action: %s\r\n", r.Action)
		fmt.Fprintf(&b, "Status: %s\r\n", statusOf(r))
		if r.RemoteMTA != "" {
			mta := r.RemoteMTA
			if !strings.Contains(mta, ";") {
				mta = "dns; " + mta
			}
			fmt.Fprintf(&b, "Remote-MTA: %s\r\n", oneLine(mta))
		}
		diag := r.DiagnosticCode
		if diag == "" && r.Reason != "" {
			diag = "X-" + s.mailName() + "; " + r.Reason
		}
		if diag != "" {
			wrap(&b, "Diagnostic-Code: "+diag)
		}
		if r.Action == Delayed && !m.Arrival.IsZero() {
			fmt.Fprintf(&b, "Will-Retry-Until: %s\r\n", maildate.Format(m.Arrival.Add(s.MaximalQueueLifetime).In(s.loc())))
		}
	}

	// Part 3: the original or its headers (RFC 3462 1, RFC 3464 2).
	fmt.Fprintf(&b, "\r\n--%s\r\n", boundary)
	what := "Undelivered Message"
	if n.kind == Success {
		what = "Message"
	}
	var ctype string
	switch {
	case attachFull && m.SMTPUTF8:
		ctype = "message/global"
	case attachFull:
		ctype = "message/rfc822"
	case m.SMTPUTF8:
		ctype, what = "message/global-headers", what+" Headers"
	default:
		ctype, what = "text/rfc822-headers", what+" Headers"
	}
	fmt.Fprintf(&b, "Content-Description: %s\r\nContent-Type: %s\r\n", what, ctype)
	if enc == "8bit" {
		// Postfix labels the returned message only when it is 8-bit.
		fmt.Fprintf(&b, "Content-Transfer-Encoding: %s\r\n", enc)
	}
	b.WriteString("\r\n")
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", quote8(s.returnPath(m.Sender)))
	body = appendCRLF(b.Bytes(), orig, !attachFull)
	body = append(body, "\r\n--"...)
	body = append(body, boundary...)
	body = append(body, "--\r\n"...)
	encoding := EncodingNone
	switch enc {
	case "7bit":
		encoding = Encoding7Bit
	case "8bit":
		encoding = Encoding8Bit
	}
	return body, encoding, nil
}

// returnPath is the sender as the notice shows it: the null sender is
// MAILER-DAEMON@myhostname.
func (s *Settings) returnPath(sender string) string {
	if sender == "" {
		return "MAILER-DAEMON@" + s.Hostname
	}
	return sender
}

// fromHeader is the template's From: value with @myorigin added to an
// address without a domain, as Postfix's cleanup adds it: "Mail Delivery
// System <MAILER-DAEMON>" becomes "Mail Delivery System
// <MAILER-DAEMON@myorigin>", "MAILER-DAEMON (Mail Delivery System)"
// becomes "MAILER-DAEMON@myorigin (Mail Delivery System)".
func (s *Settings) fromHeader(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return v[:i+1] + s.qualify(strings.TrimSpace(v[i+1:i+j])) + v[i+j:]
		}
	}
	addr, comment := v, ""
	if i := strings.IndexByte(v, '('); i >= 0 {
		addr, comment = v[:i], v[i:]
	}
	addr = s.qualify(strings.TrimSpace(addr))
	if comment == "" {
		return addr
	}
	return addr + " " + comment
}

func statusOf(r Recipient) string {
	if r.Status != "" {
		return r.Status
	}
	switch r.Action {
	case Failed:
		return "5.0.0"
	case Delayed:
		return "4.0.0"
	}
	return "2.0.0"
}

// readOriginal returns the original to attach as stored: the whole
// message, or at least its header section.
func readOriginal(m *Message, full bool) ([]byte, error) {
	if m.Size == 0 {
		return nil, nil
	}
	sr := io.NewSectionReader(m.Content, 0, m.Size)
	var raw []byte
	if full {
		raw = make([]byte, m.Size)
		if _, err := io.ReadFull(sr, raw); err != nil {
			return nil, fmt.Errorf("bounce: read message %s: %w", m.QueueID, err)
		}
	} else {
		// Read until the blank line that ends the header section.
		buf := make([]byte, 8192)
		for {
			n, err := sr.Read(buf)
			raw = append(raw, buf[:n]...)
			if headerEnd(raw) {
				break
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("bounce: read message %s: %w", m.QueueID, err)
			}
		}
	}
	return raw, nil
}

// headerEnd says whether raw holds the blank line after the headers.
func headerEnd(raw []byte) bool {
	return raw[0] == '\n' || bytes.HasPrefix(raw, []byte("\r\n")) ||
		bytes.Contains(raw, []byte("\n\n")) || bytes.Contains(raw, []byte("\n\r\n"))
}

// appendCRLF appends the lines of raw to out, each ending with CRLF (the
// queue may keep LF); with headersOnly it stops at the first empty line.
func appendCRLF(out, raw []byte, headersOnly bool) []byte {
	for len(raw) > 0 {
		line := raw
		nl := bytes.IndexByte(raw, '\n')
		if nl >= 0 {
			line, raw = raw[:nl], raw[nl+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if headersOnly && len(line) == 0 {
			break
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
	}
	return out
}

// wrap writes text folded as Postfix folds it: lines of at most
// wrapWidth columns broken at blanks, continuation lines indented; a
// word longer than a line stands alone.
func wrap(b *bytes.Buffer, text string) {
	text = oneLine(text)
	lineLen := 0
	first := true
	for len(text) > 0 {
		// Next word with the blanks before it.
		i := 0
		for i < len(text) && (text[i] == ' ' || text[i] == '\t') {
			i++
		}
		j := i
		for j < len(text) && text[j] != ' ' && text[j] != '\t' {
			j++
		}
		gap, word := text[:i], text[i:j]
		text = text[j:]
		if word == "" {
			break
		}
		switch {
		case first:
			b.WriteString(gap)
			b.WriteString(word)
			lineLen = len(gap) + len(word)
			first = false
		case lineLen+len(gap)+len(word) > wrapWidth:
			b.WriteString("\r\n")
			b.WriteString(wrapIndent)
			b.WriteString(word)
			lineLen = len(wrapIndent) + len(word)
		default:
			b.WriteString(gap)
			b.WriteString(word)
			lineLen += len(gap) + len(word)
		}
	}
	b.WriteString("\r\n")
}

// oneLine replaces line breaks and other control characters that would
// break the message structure with spaces.
func oneLine(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// quote8 is Postfix's quote_822_local without 8-bit cleanliness, as its
// bounce daemon uses it for the sender: a local part that needs quoting,
// or has 8-bit bytes, is quoted, with a backslash before '"', '\\' and
// each 8-bit byte.
func quote8(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		at = len(addr)
	}
	local := addr[:at]
	if !address.NeedsQuoting(local) && isASCII(local) {
		return addr
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c == '"' || c == '\\' || c >= 0x80 {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	b.WriteString(addr[at:])
	return oneLine(b.String())
}

// durationIn converts d to whole units for $delay_warning_time_hours and
// friends; Postfix truncates (and warns about a zero result).
func durationIn(d time.Duration, unit string) (string, bool) {
	var u time.Duration
	switch unit {
	case "seconds":
		u = time.Second
	case "minutes":
		u = time.Minute
	case "hours":
		u = time.Hour
	case "days":
		u = 24 * time.Hour
	case "weeks":
		u = 7 * 24 * time.Hour
	default:
		return "", false
	}
	return strconv.FormatInt(int64(d/u), 10), true
}
