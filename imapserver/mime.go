package imapserver

import (
	"bytes"
	"strings"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// A MIME parser of our own for BODYSTRUCTURE and BODY[section]: go-imap's
// helpers (built on go-message) give up on broken header lines and drop
// the rest of a multipart, where Dovecot carries on. This one is lenient
// the way Dovecot is: a header line without a colon is skipped, a missing
// closing boundary ends the part at the end of its parent, and nesting is
// bounded.

const maxMIMEDepth = 50

type hfield struct {
	key   string // as written
	value string // unfolded, without the line ends
	raw   []byte // the field's lines as written, with their line ends
}

type mimePart struct {
	raw                []byte // the whole message this part belongs to
	hdrStart, hdrEnd   int    // header, including the empty line
	bodyStart, bodyEnd int
	fields             []hfield
	typ, subtype       string
	params             map[string]string
	children           []*mimePart // multipart
	msg                *mimePart   // message/rfc822: the encapsulated message
}

func (p *mimePart) header() []byte { return p.raw[p.hdrStart:p.hdrEnd] }
func (p *mimePart) body() []byte   { return p.raw[p.bodyStart:p.bodyEnd] }

// get returns the field's value. Of repeated fields the first
// Content-Type counts and the last of the others, as in Dovecot.
func (p *mimePart) get(key string) (string, bool) {
	if strings.EqualFold(key, "Content-Type") {
		for _, f := range p.fields {
			if strings.EqualFold(f.key, key) {
				return f.value, true
			}
		}
		return "", false
	}
	for i := len(p.fields) - 1; i >= 0; i-- {
		if strings.EqualFold(p.fields[i].key, key) {
			return p.fields[i].value, true
		}
	}
	return "", false
}

// lineEnd returns the index after the line starting at i (after its LF,
// or end).
func lineEnd(b []byte, i, end int) int {
	j := bytes.IndexByte(b[i:end], '\n')
	if j < 0 {
		return end
	}
	return i + j + 1
}

func trimEOL(l []byte) []byte {
	l = bytes.TrimSuffix(l, []byte("\n"))
	return bytes.TrimSuffix(l, []byte("\r"))
}

// parseMIME parses the message raw[start:end].
func parseMIME(raw []byte, start, end int, digest bool, depth int) *mimePart {
	p := &mimePart{raw: raw, hdrStart: start}
	i := start
	for i < end {
		e := lineEnd(raw, i, end)
		line := trimEOL(raw[i:e])
		if len(line) == 0 {
			i = e
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(p.fields) > 0 {
			f := &p.fields[len(p.fields)-1]
			f.value += " " + strings.TrimLeft(string(line), " \t")
			f.raw = raw[i-len(f.raw) : e]
		} else if c := bytes.IndexByte(line, ':'); c > 0 {
			p.fields = append(p.fields, hfield{
				key:   strings.TrimRight(string(line[:c]), " \t"),
				value: strings.TrimLeft(string(line[c+1:]), " \t"),
				raw:   raw[i:e],
			})
		} else {
			// A line without a colon stays in the header (Dovecot
			// returns it in BODY[HEADER.FIELDS.NOT ...]) but names no
			// field anyone can ask for.
			p.fields = append(p.fields, hfield{key: "\x00" + string(line), raw: raw[i:e]})
		}
		i = e
	}
	p.hdrEnd, p.bodyStart, p.bodyEnd = i, i, end
	ct, hasCT := p.get("Content-Type")
	typ, sub, params, ok := parseContentType(ct)
	switch {
	case hasCT && !ok:
		// Dovecot gives up on a field it cannot read ("text/plain>",
		// "<html>", ";", "application/pdf name=x"): empty type and
		// subtype, no parameters.
		p.params = map[string]string{}
		return p
	case !hasCT || typ == "":
		if digest {
			typ, sub = "message", "rfc822"
		} else {
			typ, sub = "text", "plain"
		}
		params = map[string]string{}
	}
	p.typ, p.subtype, p.params = typ, sub, params
	if strings.EqualFold(p.typ, "text") {
		cs, ok := params["charset"]
		if !ok {
			params["charset"] = "us-ascii"
			if len(params) == 1 && strings.EqualFold(typ+"/"+sub, "text/plain") && p.plainDefaults() {
				p.typ, p.subtype = "text", "plain"
			}
		} else if len(params) == 1 && strings.EqualFold(cs, "us-ascii") && strings.EqualFold(typ+"/"+sub, "text/plain") && p.plainDefaults() {
			// Dovecot renders a part that only restates the defaults
			// with the defaults' spelling.
			params["charset"] = "us-ascii"
			p.typ, p.subtype = "text", "plain"
		}
	}
	if depth >= maxMIMEDepth {
		return p
	}
	switch {
	case strings.EqualFold(p.typ, "multipart"):
		p.children = splitMultipart(raw, p.bodyStart, p.bodyEnd, params["boundary"], strings.EqualFold(p.subtype, "digest"), depth)
	case strings.EqualFold(p.typ, "message") && strings.EqualFold(p.subtype, "rfc822"):
		p.msg = parseMIME(raw, p.bodyStart, p.bodyEnd, false, depth+1)
	}
	return p
}

// splitMultipart finds the body parts between boundary lines.
func splitMultipart(raw []byte, start, end int, boundary string, digest bool, depth int) []*mimePart {
	if boundary == "" {
		return nil
	}
	delim := []byte("--" + boundary)
	var parts []*mimePart
	partStart := -1
	for i := start; i < end; {
		e := lineEnd(raw, i, end)
		line := trimEOL(raw[i:e])
		if bytes.HasPrefix(line, delim) {
			rest := line[len(delim):]
			// "--b--" ends the multipart whatever follows (Dovecot);
			// "--b" must be followed by blanks only, so that a longer
			// boundary of a nested part ("--b-1") is not taken for it.
			closing := bytes.HasPrefix(rest, []byte("--"))
			if closing || len(bytes.Trim(rest, " \t")) == 0 {
				if partStart >= 0 {
					// The line end before the delimiter belongs to it,
					// unless it ends a nested multipart's closing
					// delimiter line (Dovecot counts that one).
					pe := i
					if pe > partStart && raw[pe-1] == '\n' {
						pe--
						if pe > partStart && raw[pe-1] == '\r' {
							pe--
						}
						if endsWithClose(raw, partStart, pe) {
							pe = i
						}
					}
					parts = append(parts, parseMIME(raw, partStart, pe, digest, depth+1))
				}
				if closing {
					return parts
				}
				partStart = e
			}
		}
		i = e
	}
	if partStart >= 0 && partStart <= end {
		parts = append(parts, parseMIME(raw, partStart, end, digest, depth+1))
	}
	return parts
}

// bodyStructure renders the part as IMAP's BODYSTRUCTURE (extended).
func (p *mimePart) bodyStructure() imap.BodyStructure {
	if strings.EqualFold(p.typ, "multipart") {
		mp := &imap.BodyStructureMultiPart{Subtype: p.subtype}
		for _, c := range p.children {
			mp.Children = append(mp.Children, c.bodyStructure())
		}
		if len(mp.Children) == 0 {
			// A multipart without parts: an empty text part keeps the
			// syntax valid.
			mp.Children = append(mp.Children, &imap.BodyStructureSinglePart{
				Type: "text", Subtype: "plain", Params: map[string]string{"charset": "us-ascii"}, Encoding: "7bit",
				Text: &imap.BodyStructureText{}, Extended: &imap.BodyStructureSinglePartExt{},
			})
		}
		mp.Extended = &imap.BodyStructureMultiPartExt{
			Params:      p.params,
			Disposition: p.disposition(),
			Language:    p.language(),
			Location:    p.location(),
		}
		return mp
	}
	enc, ok := p.get("Content-Transfer-Encoding")
	if !ok || strings.TrimSpace(enc) == "" {
		enc = "7bit"
	}
	id, _ := p.get("Content-Id")
	desc, _ := p.get("Content-Description")
	body := p.body()
	sp := &imap.BodyStructureSinglePart{
		Type:        p.typ,
		Subtype:     p.subtype,
		Params:      p.params,
		ID:          id,
		Description: desc,
		Encoding:    strings.TrimSpace(enc),
		Size:        uint32(len(body)),
		Extended: &imap.BodyStructureSinglePartExt{
			Disposition: p.disposition(),
			Language:    p.language(),
			Location:    p.location(),
		},
	}
	lines := int64(bytes.Count(body, []byte("\n")))
	switch {
	case p.msg != nil:
		sp.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      p.msg.envelope(),
			BodyStructure: p.msg.bodyStructure(),
			NumLines:      lines,
		}
	case strings.EqualFold(p.typ, "text"):
		sp.Text = &imap.BodyStructureText{NumLines: lines}
	}
	return sp
}

func (p *mimePart) disposition() *imap.BodyStructureDisposition {
	v, ok := p.get("Content-Disposition")
	if !ok {
		return nil
	}
	d, params, ok := parseValueParams(v)
	if !ok || d == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: d, Params: params}
}

func (p *mimePart) language() []string {
	v, ok := p.get("Content-Language")
	if !ok {
		return nil
	}
	var out []string
	for _, l := range strings.Split(v, ",") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func (p *mimePart) location() string {
	v, _ := p.get("Content-Location")
	return v
}

func (p *mimePart) textprotoHeader() textproto.Header {
	var h textproto.Header
	for i := len(p.fields) - 1; i >= 0; i-- {
		if !strings.HasPrefix(p.fields[i].key, "\x00") {
			h.Add(p.fields[i].key, p.fields[i].value)
		}
	}
	return h
}

// envelope is ENVELOPE, with two of Dovecot's habits: the subject's
// runs of blanks are folded to one space, and an address field that is
// present but holds no parsable address shows as
// MISSING_MAILBOX@MISSING_DOMAIN.
func (p *mimePart) envelope() *imap.Envelope {
	env := goimapserver.ExtractEnvelope(p.textprotoHeader())
	env.Subject = foldBlanks(env.Subject)
	for _, l := range [][]imap.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		for i := range l {
			l[i].Name = foldBlanks(l[i].Name)
		}
	}
	missing := []imap.Address{{Mailbox: "MISSING_MAILBOX", Host: "MISSING_DOMAIN"}}
	for _, f := range []struct {
		key  string
		list *[]imap.Address
	}{{"From", &env.From}, {"To", &env.To}, {"Cc", &env.Cc}, {"Bcc", &env.Bcc}} {
		if v, ok := p.get(f.key); ok && strings.TrimSpace(v) != "" && len(*f.list) == 0 {
			*f.list = missing
		}
	}
	for _, f := range []struct {
		key  string
		list *[]imap.Address
	}{{"Sender", &env.Sender}, {"Reply-To", &env.ReplyTo}} {
		if v, ok := p.get(f.key); (!ok || strings.TrimSpace(v) == "") && len(*f.list) == 0 {
			*f.list = env.From
		}
	}
	return env
}

// find returns the part a section path names (RFC 3501 6.4.5), nil when
// it does not exist. Part 1 of a single-part message is its body; after a
// message/rfc822 part, numbers go into the encapsulated message. As in
// Dovecot, a leaf part inside a multipart answers to ".1" as itself, while
// the body of a single-part message has no part 1.1.
func (p *mimePart) find(path []int) *mimePart {
	cur := p
	for k, n := range path {
		container := cur
		if k > 0 && cur.msg != nil {
			container = cur.msg
		}
		if strings.EqualFold(container.typ, "multipart") {
			if n < 1 || n > len(container.children) {
				return nil
			}
			cur = container.children[n-1]
			continue
		}
		if n != 1 || (k > 0 && container == p) {
			return nil
		}
		cur = container
	}
	return cur
}

// section extracts BODY[section] (without the partial range).
func (p *mimePart) section(s *imap.FetchItemBodySection) []byte {
	target := p
	if len(s.Part) > 0 {
		target = p.find(s.Part)
		if target == nil {
			return nil
		}
	}
	switch s.Specifier {
	case imap.PartSpecifierNone:
		if len(s.Part) == 0 {
			return p.raw[p.hdrStart:p.bodyEnd]
		}
		return target.body()
	case imap.PartSpecifierMIME:
		return target.header()
	}
	// HEADER, HEADER.FIELDS, TEXT: of the message itself, or of the
	// message a message/rfc822 part encapsulates.
	m := target
	if len(s.Part) > 0 {
		if target.msg == nil {
			return nil
		}
		m = target.msg
	}
	switch s.Specifier {
	case imap.PartSpecifierText:
		return m.body()
	case imap.PartSpecifierHeader:
		if len(s.HeaderFields) == 0 && len(s.HeaderFieldsNot) == 0 {
			return m.header()
		}
		var out []byte
		for _, f := range m.fields {
			in := false
			for _, k := range s.HeaderFields {
				in = in || strings.EqualFold(k, f.key)
			}
			if len(s.HeaderFieldsNot) > 0 {
				in = true
				for _, k := range s.HeaderFieldsNot {
					if strings.EqualFold(k, f.key) {
						in = false
					}
				}
			}
			if in {
				out = append(out, f.raw...)
				if !bytes.HasSuffix(f.raw, []byte("\n")) {
					out = append(out, '\r', '\n')
				}
			}
		}
		if len(s.HeaderFieldsNot) == 0 || m.hasEmptyLine() {
			out = append(out, '\r', '\n')
		}
		return out
	}
	return nil
}

// hasEmptyLine: the header ends with an empty line (a message that is
// all header has none, and Dovecot adds none to HEADER.FIELDS).
func (p *mimePart) hasEmptyLine() bool {
	h := p.header()
	return bytes.Equal(h, []byte("\r\n")) || bytes.Equal(h, []byte("\n")) || bytes.HasSuffix(h, []byte("\n\r\n")) || bytes.HasSuffix(h, []byte("\n\n"))
}

// partial applies <offset.size>.
func partial(b []byte, pr *imap.SectionPartial) []byte {
	if pr == nil {
		return b
	}
	if pr.Offset >= int64(len(b)) {
		return []byte{}
	}
	b = b[pr.Offset:]
	if pr.Size >= 0 && pr.Size < int64(len(b)) {
		b = b[:pr.Size]
	}
	return b
}

// endsWithClose tells whether raw[start:end] is a multipart whose last
// line is its own closing delimiter.
func endsWithClose(raw []byte, start, end int) bool {
	p := parseMIME(raw, start, end, false, maxMIMEDepth)
	b := p.params["boundary"]
	if !strings.EqualFold(p.typ, "multipart") || b == "" {
		return false
	}
	return bytes.HasSuffix(bytes.TrimRight(raw[start:end], " \t"), []byte("--"+b+"--"))
}

// plainDefaults: no MIME field besides Content-Type that would make the
// part differ from a default text/plain part.
func (p *mimePart) plainDefaults() bool {
	if v, ok := p.get("Content-Transfer-Encoding"); ok && !strings.EqualFold(strings.TrimSpace(v), "7bit") {
		return false
	}
	for _, k := range []string{"Content-Id", "Content-Description", "Content-Disposition", "Content-Language", "Content-Location", "Content-Md5"} {
		if _, ok := p.get(k); ok {
			return false
		}
	}
	return true
}

// junkAfterType: the media type is followed by something other than
// parameters.
func junkAfterType(ct string) bool {
	ct = strings.TrimSpace(ct)
	end := strings.IndexAny(ct, "; \t(")
	if end < 0 {
		return false
	}
	rest := strings.TrimLeft(ct[end:], " \t")
	return rest != "" && rest[0] != ';' && rest[0] != '('
}

func foldBlanks(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' }), " ")
}

// isTokenChar: RFC 2045 token characters, and 8-bit bytes (accepted as
// Dovecot accepts them).
func isTokenChar(c byte) bool {
	if c >= 0x80 {
		return true
	}
	if c <= ' ' || c == 0x7f {
		return false
	}
	return !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}

func skipBlanks(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') {
		i++
	}
	return i
}

func token(s string, i int) (string, int) {
	j := i
	for j < len(s) && isTokenChar(s[j]) {
		j++
	}
	return s[i:j], j
}

// parseContentType reads "type/subtype; a=b; ..." the way Dovecot does:
// type and subtype keep their case; parameters are read until the first
// one that cannot be parsed (those before it are kept; keys lower-cased,
// the first of duplicates wins). ok is false when the type itself is
// unreadable or followed by something other than parameters.
func parseContentType(v string) (typ, sub string, params map[string]string, ok bool) {
	i := skipBlanks(v, 0)
	typ, i = token(v, i)
	i = skipBlanks(v, i)
	if typ == "" || i >= len(v) || v[i] != '/' {
		return "", "", nil, false
	}
	i = skipBlanks(v, i+1)
	sub, i = token(v, i)
	if sub == "" {
		return "", "", nil, false
	}
	params, ok = readParams(v, i)
	return typ, sub, params, ok
}

// parseValueParams reads "value; a=b" (Content-Disposition).
func parseValueParams(v string) (string, map[string]string, bool) {
	i := skipBlanks(v, 0)
	val, i := token(v, i)
	params, ok := readParams(v, i)
	return val, params, ok
}

func readParams(v string, i int) (map[string]string, bool) {
	params := map[string]string{}
	i = skipBlanks(v, i)
	if i < len(v) && v[i] != ';' && v[i] != '(' {
		return nil, false
	}
	for i < len(v) {
		i = skipBlanks(v, i)
		if i < len(v) && v[i] == '(' { // a comment ends what we read
			break
		}
		if i >= len(v) || v[i] != ';' {
			break
		}
		i = skipBlanks(v, i+1)
		var key string
		key, i = token(v, i)
		i = skipBlanks(v, i)
		if key == "" || i >= len(v) || v[i] != '=' {
			break
		}
		i = skipBlanks(v, i+1)
		var val string
		if i < len(v) && v[i] == '"' {
			var b strings.Builder
			j := i + 1
			for ; j < len(v) && v[j] != '"'; j++ {
				if v[j] == '\\' && j+1 < len(v) {
					j++
				}
				b.WriteByte(v[j])
			}
			if j >= len(v) {
				break // unterminated quoted string: dropped, as Dovecot does
			}
			val, i = b.String(), j+1
		} else {
			val, i = token(v, i)
			if val == "" {
				break
			}
		}
		k := strings.ToLower(key)
		if _, dup := params[k]; !dup {
			params[k] = val
		}
	}
	return params, true
}
