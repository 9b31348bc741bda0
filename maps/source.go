package maps

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// This file reads the source text of Postfix's indexed tables: postmap(1)'s
// "key whitespace value" format and postalias(1)'s aliases(5) format. The
// rules below were checked line by line against Postfix 3.7's postmap and
// postalias (see source_test.go, which runs them).

// ReadSource parses a table source file: postmap(1) format, or aliases(5)
// format when opts.Aliases is set (postalias(1)). file names the source in
// warnings. Records come back in file order, with the line each logical line
// starts on; duplicate keys are kept (see DedupeRecords). Bad lines are
// reported through opts.Warn with Postfix's wording and skipped, as postmap
// does, so the only error is a failure to read r.
//
// Keys are folded to lower case (FoldKey) unless opts.NoFold (postmap -f).
// As with smtputf8_enable = yes (the default at compatibility_level 3.6), a
// logical line that is not valid UTF-8 is warned about and skipped.
func ReadSource(r io.Reader, file string, opts Options) ([]Record, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("maps: read %s: %w", file, err)
	}
	return srcParse(string(data), file, &opts), nil
}

// DedupeRecords drops every record whose key was seen before: the first one
// wins, as in every Postfix indexed table. Each dropped record draws the
// warning `duplicate entry: "KEY"` (the key as stored, so folded unless
// NoFold). file is the name Postfix's warning shows, which depends on the
// table type: "FILE.db" for hash and btree, "lmdb:FILE" for lmdb, "FILE" for
// cdb (postmap -c DIR hash:FILE prints "postmap: warning: FILE.db:
// duplicate entry: ..."). The warning carries no line number.
func DedupeRecords(records []Record, file string, opts Options) []Record {
	return srcDedupe(records, file, false, &opts)
}

// srcDedupe keeps the first record of each key. withLine puts the duplicate's
// line into the warning, as texthash does ("FILE, line N: duplicate entry").
func srcDedupe(records []Record, file string, withLine bool, opts *Options) []Record {
	seen := make(map[string]struct{}, len(records))
	out := records[:0:0]
	dups := false
	for i, rec := range records {
		if _, ok := seen[rec.Key]; ok {
			if !dups {
				dups = true
				out = append(make([]Record, 0, len(records)), records[:i]...)
			}
			line := 0
			if withLine {
				line = rec.Line
			}
			opts.warn(Warning{File: file, Line: line, Msg: `duplicate entry: "` + srcPrintable(rec.Key) + `"`})
			continue
		}
		seen[rec.Key] = struct{}{}
		if dups {
			out = append(out, rec)
		}
	}
	if !dups {
		return records
	}
	return out
}

// srcIsSpace is C's isspace() in the C locale, which Postfix uses for
// continuation lines, key separators and trimming.
func srcIsSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// srcTrim removes isspace() characters from both ends.
func srcTrim(s string) string {
	i, j := 0, len(s)
	for i < j && srcIsSpace(s[i]) {
		i++
	}
	for j > i && srcIsSpace(s[j-1]) {
		j--
	}
	return s[i:j]
}

// srcPrintable renders text for a warning the way Postfix's logging does:
// control characters and bytes that are not valid UTF-8 become '?'.
func srcPrintable(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			if c < 0x20 || c == 0x7f {
				b.WriteByte('?')
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		// Postfix's logging lets UTF-16 surrogates (ED A0..BF xx) through,
		// though its UTF-8 check rejects them.
		if r == utf8.RuneError && n <= 1 && i+2 < len(s) && c == 0xed && s[i+1]&0xe0 == 0xa0 && s[i+2]&0xc0 == 0x80 {
			n = 3
		} else if r == utf8.RuneError && n <= 1 {
			b.WriteByte('?')
			i++
			continue
		}
		b.WriteString(s[i : i+n])
		i += n
	}
	return b.String()
}

// srcParse splits data into logical lines and parses each one.
//
// Logical lines (Postfix readllines): a line that starts with whitespace
// continues the previous one, appended as is (leading whitespace kept, no
// newline). Blank lines and lines whose first non-blank character is '#'
// are skipped and do not end a logical line. A logical line that starts
// with whitespace (at the top of the file) is warned about and dropped.
func srcParse(data, file string, opts *Options) []Record {
	recs := make([]Record, 0, strings.Count(data, "\n")+1)
	var (
		cur       string // current logical line, when it is one physical line
		buf       []byte // current logical line, once a continuation is joined
		joined    bool
		have      bool
		startLine int
	)
	flush := func() {
		if !have {
			return
		}
		text := cur
		if joined {
			text = string(buf)
		}
		have, joined = false, false
		if srcIsSpace(text[0]) {
			more := ""
			if len(text) > 30 {
				text, more = text[:30], "..."
			}
			opts.warn(Warning{File: file, Msg: `logical line must not start with whitespace: "` + srcPrintable(text) + more + `"`})
			return
		}
		// Postfix handles lines as C strings: a NUL ends the text.
		if i := strings.IndexByte(text, 0); i >= 0 {
			text = text[:i]
		}
		if !utf8.ValidString(text) {
			opts.warn(Warning{File: file, Line: startLine, Msg: `non-UTF-8 input "` + srcPrintable(text) + `" -- ignoring this line`})
			return
		}
		var rec Record
		var ok bool
		if opts.Aliases {
			rec, ok = srcAliasLine(text, file, startLine, opts)
		} else {
			rec, ok = srcMapLine(text, file, startLine, opts)
		}
		if ok {
			rec.Line = startLine
			recs = append(recs, rec)
		}
	}
	lineno := 0
	for len(data) > 0 {
		var line string
		if i := strings.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, ""
		}
		lineno++
		// Classify the line as C sees it (up to a NUL).
		vis := line
		if i := strings.IndexByte(vis, 0); i >= 0 {
			vis = vis[:i]
		}
		j := 0
		for j < len(vis) && srcIsSpace(vis[j]) {
			j++
		}
		if j == len(vis) || vis[j] == '#' {
			continue
		}
		if j > 0 && have {
			if !joined {
				buf = append(buf[:0], cur...)
				joined = true
			}
			buf = append(buf, line...)
			continue
		}
		flush()
		cur, have, startLine = line, true, lineno
	}
	flush()
	return recs
}

// srcMapLine parses one postmap(1) logical line: the key ends at the first
// whitespace that is not inside double quotes (a backslash protects the next
// character, inside or outside quotes); the quotes stay part of the key.
// The value is the rest, trimmed.
func srcMapLine(text, file string, line int, opts *Options) (Record, bool) {
	quoted := false
	i := 0
scan:
	for ; i < len(text); i++ {
		switch c := text[i]; {
		case c == '\\':
			if i+1 < len(text) {
				i++
			}
		case c == '"':
			quoted = !quoted
		case !quoted && srcIsSpace(c):
			break scan
		}
	}
	if quoted {
		opts.warn(Warning{File: file, Line: line, Msg: `unbalanced '"' in '` + srcPrintable(text) + `' -- ignoring this line`})
		return Record{}, false
	}
	key, value := text[:i], srcTrim(text[i:])
	if value == "" {
		opts.warn(Warning{File: file, Line: line, Msg: "expected format: key whitespace value"})
		return Record{}, false
	}
	if strings.HasSuffix(key, ":") {
		opts.warn(Warning{File: file, Line: line, Msg: `record is in "key: value" format; is this an alias file?`})
	}
	if !opts.NoFold {
		key = FoldKey(key)
	}
	return Record{Key: key, Value: value}, true
}

// srcAliasLine parses one aliases(5) logical line, "name: value". Like
// postalias(1), it runs the line through an RFC 822 tokenizer: the name is
// the text before the first ':' with quotes removed and must be local (no
// '@' or '%'); the value is re-rendered from its tokens, which normalises
// whitespace ("a,b ,  c" becomes "a, b, c") and drops backslashes that
// quote ordinary characters ("\root" becomes "root").
func srcAliasLine(text, file string, line int, opts *Options) (Record, bool) {
	toks := srcTokenize(text)
	if len(toks) == 0 {
		return Record{}, false
	}
	colon := -1
	for i, t := range toks {
		if t.kind == ':' {
			colon = i
			break
		}
	}
	bad := colon <= 0 || colon == len(toks)-1
	if !bad {
		for _, t := range toks[:colon] {
			if t.kind == ',' {
				bad = true
				break
			}
		}
	}
	if bad {
		opts.warn(Warning{File: file, Line: line, Msg: "need name:value pair"})
		return Record{}, false
	}
	for _, t := range toks[:colon] {
		if t.kind == '@' || t.kind == '%' {
			opts.warn(Warning{File: file, Line: line, Msg: "name must be local"})
			return Record{}, false
		}
	}
	key := srcRender(toks[:colon], false)
	if !opts.NoFold {
		key = FoldKey(key)
	}
	return Record{Key: key, Value: srcRender(toks[colon+1:], true)}, true
}

// Token kinds of the RFC 822 tokenizer; operators use their own character.
const (
	srcAtom    = 'a'
	srcQuoted  = 'q'
	srcComment = 'c'
	srcDomLit  = 'd'
)

type srcToken struct {
	kind byte
	text string // atom text, unquoted string content, raw comment, literal content
}

// srcOperators are the characters the tokenizer treats as single-character
// operators ('\\' and '"' excepted, which start atoms and quoted strings).
// Postfix's list goes beyond RFC 822's specials: it includes '%', '!' and
// '|', so "a%b" is three tokens and an atom holding an escaped '|' is quoted.
const srcOperators = "|\"(),.:;<>@[]%!\\"

func srcIsOperator(c byte) bool { return strings.IndexByte(srcOperators, c) >= 0 }

// srcTokenize splits an aliases(5) line into RFC 822 tokens. It never fails:
// an unterminated quoted string or literal ends at the end of the line, and
// a backslash at the end of the line is dropped.
func srcTokenize(s string) []srcToken {
	var toks []srcToken
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case srcIsSpace(c):
			i++
		case c == '(':
			// A comment is kept raw, nested parentheses and backslashes
			// included; an unterminated one is not closed.
			start := i
			depth := 0
			for i < len(s) {
				ch := s[i]
				i++
				if ch == '\\' {
					if i < len(s) {
						i++
					}
					continue
				}
				if ch == '(' {
					depth++
				} else if ch == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			toks = append(toks, srcToken{kind: srcComment, text: s[start:i]})
		case c == '"' || c == '[':
			stop := byte('"')
			kind := byte(srcQuoted)
			if c == '[' {
				stop, kind = ']', srcDomLit
			}
			i++
			var b []byte
			for i < len(s) {
				ch := s[i]
				i++
				if ch == stop {
					break
				}
				if ch == '\\' {
					if i >= len(s) {
						break
					}
					ch = s[i]
					i++
				}
				if srcIsSpace(ch) {
					ch = ' '
				}
				b = append(b, ch)
			}
			toks = append(toks, srcToken{kind: kind, text: string(b)})
		case c != '\\' && srcIsOperator(c):
			toks = append(toks, srcToken{kind: c})
			i++
		default:
			var b []byte
			kind := byte(srcAtom)
			for i < len(s) {
				ch := s[i]
				if ch == '\\' {
					if i+1 >= len(s) {
						i++
						break
					}
					i++
					ch = s[i]
				} else if srcIsSpace(ch) || srcIsOperator(ch) {
					break
				}
				if srcIsSpace(ch) {
					ch = ' '
				}
				b = append(b, ch)
				i++
			}
			// An atom that holds characters an atom may not (from
			// backslash escapes) becomes a quoted string.
			for _, ch := range b {
				if srcIsSpace(ch) || ch < 0x20 || ch == 0x7f || srcIsOperator(ch) {
					kind = srcQuoted
					break
				}
			}
			toks = append(toks, srcToken{kind: kind, text: string(b)})
		}
	}
	return toks
}

func srcIsWord(k byte) bool {
	return k == srcAtom || k == srcQuoted || k == srcComment || k == srcDomLit
}

// srcRender joins tokens back into text. external quotes strings and
// literals (the value); otherwise their content is used as is (the name).
// A space follows every comma, precedes '<', and separates two words.
func srcRender(toks []srcToken, external bool) string {
	var b bytes.Buffer
	for i, t := range toks {
		switch t.kind {
		case srcAtom, srcComment:
			b.WriteString(t.text)
		case srcQuoted:
			if external {
				b.WriteByte('"')
				srcEscape(&b, t.text, "\"\\\r\n")
				b.WriteByte('"')
			} else {
				b.WriteString(t.text)
			}
		case srcDomLit:
			b.WriteByte('[')
			if external {
				srcEscape(&b, t.text, "\\\r\n")
			} else {
				b.WriteString(t.text)
			}
			b.WriteByte(']')
		default:
			b.WriteByte(t.kind)
		}
		if t.kind == ',' {
			b.WriteByte(' ')
			continue
		}
		if i+1 < len(toks) {
			next := toks[i+1].kind
			if next == '<' || (srcIsWord(t.kind) && srcIsWord(next)) {
				b.WriteByte(' ')
			}
		}
	}
	return b.String()
}

func srcEscape(b *bytes.Buffer, s, special string) {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(special, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
}
