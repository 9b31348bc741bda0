package contentcheck

// The MIME walk follows Postfix's mime_state machine: it knows headers and
// bodies, multipart boundaries and message/rfc822 parts, and nothing more;
// it never decodes content. See mime_state(3) and the README of
// header_checks(5) "MIME ... PROCESSING".

// Parser states (MIME_STATE_*): the three header states name the header
// class a header is reported in.
const (
	statePrimary   = iota // the message's own headers
	stateMultipart        // headers after a --boundary line
	stateNested           // headers of a message/rfc822 part
	stateBody             // anything else
)

// Content types and subtypes the walk cares about.
const (
	ctypeOther = iota
	ctypeText
	ctypeMessage
	ctypeMultipart
)

const (
	stypeOther = iota
	stypePlain
	stypeRFC822
	stypePartial
	stypeExternBody
	stypeGlobal
)

// Encodings and their domains (RFC 2045 section 6.1): the identity
// encodings are domains of their own, base64 and quoted-printable are in
// the 7bit domain.
const (
	enc7bit = iota
	enc8bit
	encBinary
	encBase64
	encQP
)

// MIME errors, in the order Postfix ranks them when it picks the one reply
// it gives (mime_state.c mime_err_detail).
const (
	errNesting = 1 << iota
	errTruncHeader
	err8bitInHeader
	err8bitIn7bitBody
	errEncodingDomain
)

var mimeErrText = []struct {
	flag int
	text string
}{
	{errNesting, "MIME nesting exceeds safety limit"},
	{errTruncHeader, "message header length exceeds safety limit"},
	{err8bitInHeader, "improper use of 8-bit data in message header"},
	{err8bitIn7bitBody, "improper use of 8-bit data in message body"},
	{errEncodingDomain, "invalid message/* or multipart/* encoding domain"},
}

func mimeErrorText(flags int) string {
	for _, e := range mimeErrText {
		if flags&e.flag != 0 {
			return e.text
		}
	}
	return ""
}

// boundary is one multipart level: its (possibly truncated) boundary and
// the default content type of its parts (message/rfc822 in a digest).
type boundary struct {
	text     []byte
	defCtype int
	defStype int
}

// token is one RFC 822 token of a MIME header value: a word or quoted
// string (kind 0), or a special character (kind = the character).
type token struct {
	kind   byte
	quoted bool
	text   []byte
}

const tokWord = 0

// mimeTokens reads the tokens of one ';'-separated item of a structured
// header value, like Postfix's header_token: whitespace and comments are
// skipped, quoted strings lose their quotes and backslashes, specials and
// controls are one-character tokens. It keeps at most max tokens and
// returns them, the rest of the input, and false at the end of the input
// when nothing was found.
func mimeTokens(s []byte, max int, specials string, term byte, toks []token) ([]token, []byte, bool) {
	toks = toks[:0]
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			i++
			continue
		case term != 0 && c == term:
			goto done
		case c == '(':
			depth := 0
			for i < len(s) {
				c := s[i]
				i++
				if c == '\\' {
					if i < len(s) {
						i++
					}
					continue
				}
				if c == '(' {
					depth++
				} else if c == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			continue
		case c == '"':
			var text []byte
			i++
			for i < len(s) {
				c := s[i]
				i++
				if c == '"' {
					break
				}
				if c == '\n' {
					continue
				}
				if c == '\\' && i < len(s) {
					c = s[i]
					i++
				}
				text = append(text, c)
			}
			if len(toks) < max {
				toks = append(toks, token{kind: tokWord, quoted: true, text: text})
			}
			continue
		case isSpecial(c, specials) || c < 0x20 || c == 0x7f:
			if len(toks) < max {
				toks = append(toks, token{kind: c})
			}
			i++
			continue
		default:
			j := i
			for j < len(s) {
				c := s[j]
				if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c < 0x20 || c == 0x7f || isSpecial(c, specials) {
					break
				}
				j++
			}
			if len(toks) < max {
				toks = append(toks, token{kind: tokWord, text: s[i:j]})
			}
			i = j
			continue
		}
	}
	if len(toks) == 0 {
		return toks, s[i:], false
	}
done:
	if i < len(s) {
		i++ // the ';'
	}
	return toks, s[i:], true
}

// tspecials are RFC 2045's, which Postfix uses for Content-Type; the
// default specials are RFC 822's (for Content-Transfer-Encoding).
const (
	tspecials   = "()<>@,;:\\\"/[]?="
	specials822 = "()<>@,;:\\\".[]"
)

func isSpecial(c byte, specials string) bool {
	for i := 0; i < len(specials); i++ {
		if specials[i] == c {
			return true
		}
	}
	return false
}

func tokIs(t token, word string) bool {
	return t.kind == tokWord && !t.quoted && asciiEqualFold(t.text, word)
}
