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
// starts on; duplicate keys are kept (see ReadSourceDeduped, which drops them
// and warns as Postfix does). Bad lines are reported through opts.Warn with
// Postfix's wording and skipped, as postmap does, so the only error is a
// failure to read r.
//
// Keys are folded to lower case (FoldKey) unless opts.NoFold (postmap -f).
// As with smtputf8_enable = yes (the default at compatibility_level 3.6), a
// logical line that is not valid UTF-8 is warned about and skipped.
func ReadSource(r io.Reader, file string, opts Options) ([]Record, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("maps: read %s: %w", file, err)
	}
	var recs []Record
	srcParse(string(data), file, &opts, false, func(rec Record, _ string) { recs = append(recs, rec) })
	return recs, nil
}

// Duplicates says which record a table keeps when its source holds a key
// more than once.
type Duplicates int

const (
	// DuplicatesWarn keeps the first record and warns about every later
	// one: what postmap(1) and postalias(1) do by default.
	DuplicatesWarn Duplicates = iota
	// DuplicatesReplace keeps the last record, silently: postmap -r and
	// postalias -r ("when updating a table, do not complain about
	// attempts to update existing entries, and make those updates").
	DuplicatesReplace
	// DuplicatesIgnore keeps the first record, silently: postmap -w and
	// postalias -w ("do not complain ... and ignore those attempts").
	DuplicatesIgnore
)

// DedupeOptions tell ReadSourceDeduped how the table it reads for is built.
type DedupeOptions struct {
	// Duplicates picks the record kept for a repeated key.
	Duplicates Duplicates
	// Label names the table in duplicate warnings, which depends on the
	// type Postfix builds: "FILE.db" for hash and btree, "lmdb:FILE" for
	// lmdb, "FILE" for cdb (postmap -c DIR hash:FILE prints "postmap:
	// warning: FILE.db: duplicate entry: ..."). Such warnings carry no
	// line number. Ignored when Texthash is set.
	Label string
	// Texthash selects the warnings of texthash: tables, which Postfix
	// reads with a parser of its own: a duplicate is reported as "FILE,
	// line N: duplicate entry" with the key as written (not folded), and a
	// line without a value gets " -- ignoring this line".
	Texthash bool
	// Have, if set, reports keys the table already holds (postmap -i adds
	// to an existing table): a record for such a key is a duplicate too.
	// With DuplicatesReplace it is returned, to replace the old entry.
	Have func(key string) bool
}

// ReadSourceDeduped reads a source as ReadSource does and keeps one record
// per key, as Postfix keeps one entry per key in the table it builds. Every
// warning, duplicate ones included, goes to opts.Warn in line order, as
// postmap prints them while it reads. With DuplicatesReplace a later record
// takes the place of the earlier one in the result.
func ReadSourceDeduped(r io.Reader, file string, opts Options, d DedupeOptions) ([]Record, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("maps: read %s: %w", file, err)
	}
	dd := srcNewDeduper(file, &opts, d, 0)
	srcParse(string(data), file, &opts, d.Texthash, dd.add)
	return dd.out, nil
}

// DedupeRecords drops every record whose key was seen before: the first one
// wins, as in every Postfix indexed table. Each dropped record draws the
// warning `duplicate entry: "KEY"` (the key as stored, so folded unless
// NoFold), named file (see DedupeOptions.Label). The warnings come after
// any that reading the records gave; use ReadSourceDeduped to get them in
// Postfix's order.
func DedupeRecords(records []Record, file string, opts Options) []Record {
	dd := srcNewDeduper(file, &opts, DedupeOptions{Label: file}, len(records))
	for _, rec := range records {
		dd.add(rec, rec.Key)
	}
	return dd.out
}

// srcDeduper keeps one record per key as records arrive in file order.
type srcDeduper struct {
	file string
	opts *Options
	d    DedupeOptions
	seen map[string]int // key -> index in out
	out  []Record
}

func srcNewDeduper(file string, opts *Options, d DedupeOptions, n int) *srcDeduper {
	return &srcDeduper{file: file, opts: opts, d: d, seen: make(map[string]int, n), out: make([]Record, 0, n)}
}

// add takes the next record; raw is its key as written, for texthash's
// warning.
func (dd *srcDeduper) add(rec Record, raw string) {
	j, again := dd.seen[rec.Key]
	if !again && (dd.d.Have == nil || !dd.d.Have(rec.Key)) {
		dd.seen[rec.Key] = len(dd.out)
		dd.out = append(dd.out, rec)
		return
	}
	switch dd.d.Duplicates {
	case DuplicatesWarn:
		if dd.d.Texthash {
			dd.opts.warn(Warning{File: dd.file, Line: rec.Line, Msg: `duplicate entry: "` + srcPrintable(raw) + `"`})
		} else {
			dd.opts.warn(Warning{File: dd.d.Label, Msg: `duplicate entry: "` + srcPrintable(rec.Key) + `"`})
		}
	case DuplicatesReplace:
		if again {
			dd.out[j] = rec
		} else {
			dd.seen[rec.Key] = len(dd.out)
			dd.out = append(dd.out, rec)
		}
	}
}

// isSpace is C's isspace() in the C locale, which Postfix uses for
// continuation lines, key separators and trimming.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// isAlnum is C's isalnum() in the C locale.
func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// trimSpace removes isspace() characters from both ends.
func trimSpace(s string) string {
	return trimRightSpace(trimLeftSpace(s))
}

// trimLeftSpace removes isspace() characters from the start.
func trimLeftSpace(s string) string {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return s[i:]
}

// trimRightSpace removes isspace() characters from the end.
func trimRightSpace(s string) string {
	i := len(s)
	for i > 0 && isSpace(s[i-1]) {
		i--
	}
	return s[:i]
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

// logicalLines splits text into Postfix's logical lines (its readllines):
// a line that starts with whitespace continues the previous one, appended
// as is (leading whitespace kept, no newline). Blank lines and lines whose
// first non-blank character is '#' are skipped and do not end a logical
// line. A logical line that starts with whitespace (at the top of the
// file) comes with orphan set: the caller warns about it and drops it.
//
// With cString each line is classified as C code sees it, up to its first
// NUL (postmap's and postalias's source reader); without it a NUL is an
// ordinary character, as in cidr_table(5) files. A logical line of one
// physical line is a substring of text, so a big file costs no per-line
// copies.
func logicalLines(text string, cString bool, yield func(s string, line int, orphan bool)) {
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
		s := cur
		if joined {
			s = string(buf)
		}
		have, joined = false, false
		yield(s, startLine, isSpace(s[0]))
	}
	lineno := 0
	for len(text) > 0 {
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, ""
		}
		lineno++
		vis := line
		if cString {
			if i := strings.IndexByte(vis, 0); i >= 0 {
				vis = vis[:i]
			}
		}
		j := 0
		for j < len(vis) && isSpace(vis[j]) {
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
}

// srcParse splits data into logical lines (see logicalLines; a line is
// classified up to its first NUL, as Postfix's C code sees it) and parses
// each one.
//
// Each record goes to emit, with its key as written, in file order and
// between the warnings of the lines around it. texthash selects the wording
// of texthash: tables (see DedupeOptions.Texthash).
func srcParse(data, file string, opts *Options, texthash bool, emit func(rec Record, rawKey string)) {
	logicalLines(data, true, func(text string, startLine int, orphan bool) {
		if orphan {
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
		var raw string
		var ok bool
		if opts.Aliases {
			rec, raw, ok = srcAliasLine(text, file, startLine, opts)
		} else {
			rec, raw, ok = srcMapLine(text, file, startLine, opts, texthash)
		}
		if ok {
			rec.Line = startLine
			emit(rec, raw)
		}
	})
}

// srcMapLine parses one postmap(1) logical line: the key ends at the first
// whitespace that is not inside double quotes (a backslash protects the next
// character, inside or outside quotes); the quotes stay part of the key.
// The value is the rest, trimmed.
//
// rawKey is the key before folding. texthash adds " -- ignoring this line"
// to the missing-value warning, as Postfix's texthash reader does.
func srcMapLine(text, file string, line int, opts *Options, texthash bool) (rec Record, rawKey string, ok bool) {
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
		case !quoted && isSpace(c):
			break scan
		}
	}
	if quoted {
		opts.warn(Warning{File: file, Line: line, Msg: `unbalanced '"' in '` + srcPrintable(text) + `' -- ignoring this line`})
		return Record{}, "", false
	}
	key, value := text[:i], trimSpace(text[i:])
	if value == "" {
		msg := "expected format: key whitespace value"
		if texthash {
			msg += " -- ignoring this line"
		}
		opts.warn(Warning{File: file, Line: line, Msg: msg})
		return Record{}, "", false
	}
	if strings.HasSuffix(key, ":") {
		opts.warn(Warning{File: file, Line: line, Msg: `record is in "key: value" format; is this an alias file?`})
	}
	raw := key
	if !opts.NoFold {
		key = FoldKey(key)
	}
	return Record{Key: key, Value: value}, raw, true
}

// srcAliasLine parses one aliases(5) logical line, "name: value". Like
// postalias(1), it runs the line through an RFC 822 tokenizer: the name is
// the text before the first ':' with quotes removed and must be local (no
// '@' or '%'); the value is re-rendered from its tokens, which normalises
// whitespace ("a,b ,  c" becomes "a, b, c") and drops backslashes that
// quote ordinary characters ("\root" becomes "root").
func srcAliasLine(text, file string, line int, opts *Options) (rec Record, rawKey string, ok bool) {
	toks := srcTokenize(text)
	if len(toks) == 0 {
		return Record{}, "", false
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
		return Record{}, "", false
	}
	for _, t := range toks[:colon] {
		if t.kind == '@' || t.kind == '%' {
			opts.warn(Warning{File: file, Line: line, Msg: "name must be local"})
			return Record{}, "", false
		}
	}
	key := srcRender(toks[:colon], false)
	raw := key
	if !opts.NoFold {
		key = FoldKey(key)
	}
	return Record{Key: key, Value: srcRender(toks[colon+1:], true)}, raw, true
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
		case isSpace(c):
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
				if isSpace(ch) {
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
				} else if isSpace(ch) || srcIsOperator(ch) {
					break
				}
				if isSpace(ch) {
					ch = ' '
				}
				b = append(b, ch)
				i++
			}
			// An atom that holds characters an atom may not (from
			// backslash escapes) becomes a quoted string.
			for _, ch := range b {
				if isSpace(ch) || ch < 0x20 || ch == 0x7f || srcIsOperator(ch) {
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
