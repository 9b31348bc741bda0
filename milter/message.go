package milter

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// header is one logical header of the message: its name and the raw bytes
// as received (first line and continuation lines, each ending in CRLF).
type header struct {
	name   string
	raw    []byte
	hidden bool // the MTA's own Received: header, not shown to milters
}

// value is the text after the colon with the line ends of folded lines as
// single "\n" (the way Postfix and Sendmail pass headers to milters) and no
// final line end. leadSpace keeps the white space after the colon
// (SMFIP_HDR_LEADSPC); without it the leading blanks are dropped.
func (h header) value(leadSpace bool) string {
	v := h.raw[len(h.name)+1:]
	v = bytes.TrimSuffix(v, []byte("\r\n"))
	v = bytes.TrimSuffix(v, []byte("\n"))
	s := strings.ReplaceAll(string(v), "\r\n", "\n")
	if !leadSpace {
		s = strings.TrimLeft(s, " \t")
	}
	return s
}

// message is a message held in memory while milters work on it.
type message struct {
	headers []header
	body    []byte // everything after the blank line
	noBlank bool   // the message had no header/body separator
}

// readMessage splits CRLF content into logical headers and the body. A line
// that is neither a header nor a continuation ends the headers, as in
// Postfix's cleanup (the rest is body).
func readMessage(r io.Reader) (*message, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("milter: reading the message: %w", err)
	}
	return splitMessage(data), nil
}

func splitMessage(data []byte) *message {
	m := &message{}
	pos := 0
	for pos < len(data) {
		end := bytes.IndexByte(data[pos:], '\n')
		line := data[pos:]
		if end >= 0 {
			line = data[pos : pos+end+1]
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			m.body = data[pos+len(line):]
			return m
		}
		if (line[0] == ' ' || line[0] == '\t') && len(m.headers) > 0 {
			h := &m.headers[len(m.headers)-1]
			h.raw = append(h.raw, line...)
			pos += len(line)
			continue
		}
		colon := bytes.IndexByte(trimmed, ':')
		if colon <= 0 || !isFieldName(trimmed[:colon]) {
			// Not a header: the body starts here, without a blank line.
			m.body = data[pos:]
			m.noBlank = true
			return m
		}
		raw := append([]byte(nil), line...)
		m.headers = append(m.headers, header{name: string(trimmed[:colon]), raw: raw})
		pos += len(line)
	}
	return m
}

// isFieldName reports whether b is an RFC 5322 field name (printable ASCII
// except colon; Postfix also allows trailing white space before the colon,
// which it keeps as part of the name).
func isFieldName(b []byte) bool {
	for _, c := range bytes.TrimRight(b, " \t") {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return len(bytes.TrimRight(b, " \t")) > 0
}

// writeTo writes the message as CRLF content.
func (m *message) writeTo(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, h := range m.headers {
		bw.Write(h.raw)
		if !bytes.HasSuffix(h.raw, []byte("\n")) {
			bw.WriteString("\r\n")
		}
	}
	if !m.noBlank || len(m.headers) > 0 {
		bw.WriteString("\r\n")
	}
	bw.Write(m.body)
	return bw.Flush()
}

// makeHeader builds the raw form of a header a milter adds or changes:
// "Name:" and the value as it goes after the colon (see Mod.Value), with
// its line breaks (LF or CRLF) turned into CRLF. A line of the value that
// does not start with white space gets a tab, and empty lines are dropped,
// so that a careless milter cannot end the header section early.
func makeHeader(name, value string) header {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte(':')
	for i, line := range strings.Split(strings.ReplaceAll(crlf(value), "\r\n", "\n"), "\n") {
		if i > 0 {
			if strings.TrimLeft(line, " \t") == "" {
				continue
			}
			b.WriteString("\r\n")
			if line[0] != ' ' && line[0] != '\t' {
				b.WriteByte('\t')
			}
		}
		b.WriteString(line)
	}
	b.WriteString("\r\n")
	return header{name: name, raw: []byte(b.String())}
}

// crlf turns bare LF line ends into CRLF and drops stray CRs that end no
// line, so that what a milter sends becomes well-formed content.
func crlf(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				b.WriteString("\r\n")
				i++
			}
		case '\n':
			b.WriteString("\r\n")
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// crlfBody normalizes a replacement body: CRLF line ends, and a final line
// end when the last line has none (Postfix stores lines, so the last line
// of a replaced body always ends).
func crlfBody(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	s := crlf(string(b))
	if !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return []byte(s)
}

// apply performs one header or body modification on the message. Recipient
// and sender changes do not touch the content.
//
// The index rules are those of the milter protocol as Postfix implements
// them (cleanup_milter.c behaviour, libmilter's smfi_chgheader and
// smfi_insheader manual pages):
//   - change/delete: Index is the 1-based occurrence among headers with that
//     name (case-insensitive); 0 counts as 1. Changing an occurrence that
//     does not exist adds the header at the end; deleting one is a no-op.
//   - insert: Index is the 0-based position among all headers; a position
//     past the end appends.
func (m *message) apply(mod Mod) {
	switch mod.Kind {
	case AddHeader:
		m.headers = append(m.headers, makeHeader(mod.Name, mod.Value))
	case InsertHeader:
		i := mod.Index
		if i < 0 {
			i = 0
		}
		if i > len(m.headers) {
			i = len(m.headers)
		}
		m.headers = append(m.headers, header{})
		copy(m.headers[i+1:], m.headers[i:])
		m.headers[i] = makeHeader(mod.Name, mod.Value)
	case ChangeHeader, DeleteHeader:
		idx := mod.Index
		if idx <= 0 {
			idx = 1
		}
		pos := -1
		for i, h := range m.headers {
			if strings.EqualFold(strings.TrimRight(h.name, " \t"), mod.Name) {
				idx--
				if idx == 0 {
					pos = i
					break
				}
			}
		}
		switch {
		case mod.Kind == DeleteHeader && pos >= 0:
			m.headers = append(m.headers[:pos], m.headers[pos+1:]...)
		case mod.Kind == ChangeHeader && pos >= 0:
			hidden := m.headers[pos].hidden
			m.headers[pos] = makeHeader(mod.Name, mod.Value)
			m.headers[pos].hidden = hidden
		case mod.Kind == ChangeHeader:
			m.headers = append(m.headers, makeHeader(mod.Name, mod.Value))
		}
	case ReplaceBody:
		m.body = crlfBody(mod.Body)
		if m.noBlank {
			m.noBlank = false
		}
	}
}
