package contentcheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/restrictions"
)

// LogInfo is what a check log line names: "QUEUEID: reject: header
// Subject: x from host[ip]; from=<s> to=<r> proto=ESMTP helo=<h>: 5.7.1
// text". Empty Recipient, Proto and Helo are left out of the line, as
// Postfix does; an empty Client is logged as "unknown".
type LogInfo struct {
	QueueID   string
	Client    string // name[addr], or "local"
	Sender    string // "" is the null sender
	Recipient string
	Proto     string
	Helo      string
}

// Hooks let cleanup handle the primary headers. Every hook may be nil.
type Hooks struct {
	// Seen is called with every header of the primary header block as
	// received, before the checks (hop counting, Resent- detection).
	Seen func(h *Header)
	// Header is called with each header of the primary header block that
	// survives the checks (the REPLACE text if one replaced it), in order,
	// MIME headers included; it writes what goes out (rewritten,
	// unchanged, or nothing) to w. Without it the header is written as
	// received. Lines that PREPEND adds are written by the Walker itself
	// and never reach Header, as in Postfix.
	Header func(h *Header, w io.Writer) error
	// EndOfHeaders is called once, after the last primary header and
	// before the blank line that ends them (which the walker writes
	// itself), also for a message without a body: cleanup adds missing
	// headers here. It is not called once the message is rejected or
	// discarded.
	EndOfHeaders func(w io.Writer) error
}

// Verdict is what the checks decided about the whole message.
type Verdict struct {
	// Reject is set for REJECT (550, or 451 for a 4.x.x code), a MIME or
	// strict_* error (550 5.6.0), or a table that could not be read (451
	// 4.3.0 "Error: queue file write error", as Postfix answers). A
	// rejected message must not be queued.
	Reject      *restrictions.Reply
	Discard     bool
	DiscardText string
	Hold        bool
	HoldText    string
	Filter      string   // the last FILTER transport:destination
	Redirect    string   // the last REDIRECT address
	BCC         []string // every BCC address, in order, each once
}

// Walker inspects one message as it is written to it and writes the
// resulting message to its output. It keeps at most one logical header
// (header_size_limit) and one line piece (line_length_limit) in memory.
// A Walker is not safe for concurrent use.
type Walker struct {
	c     *Config
	ctx   context.Context
	out   *bufio.Writer
	hooks Hooks
	info  LogInfo
	log   *slog.Logger

	hdrLimit, lineLimit, bodyLimit, nestLimit, boundLimit         int
	reportNesting, report8bitHeader, report8bitBody, reportDomain bool

	partial []byte // an incomplete line carried from one Write to the next
	scratch []byte
	closed  bool
	err     error // the first output or hook error

	// The MIME state machine.
	state                          int
	ctype, stype, encoding, domain int
	stack                          []boundary
	mimeErrs                       int
	bodyOffset                     int64
	prevCont                       bool
	toks                           []token

	// The logical header being collected.
	hdrKey   []byte // Postfix's form: "Name:" rest, lines joined with "\n"
	hdrRaw   []byte // as received
	hdrName  int    // length of the name in hdrKey
	lineKept bool   // the physical line in progress went into hdrRaw

	// Cleanup's state.
	filter      bool // CLEANUP_FLAG_FILTER: inspection still on
	stopped     bool // rejected or deferred: no more output
	reasonSet   bool
	headersDone bool
	v           Verdict
}

// NewWalker starts the inspection of one message whose content (headers,
// blank line, body: CRLF lines as the SMTP server delivers them) will be
// written to the Walker; the resulting message goes to out. Close ends it.
func (c *Config) NewWalker(ctx context.Context, out io.Writer, hooks Hooks, info LogInfo) *Walker {
	bw := outPool.Get().(*bufio.Writer)
	bw.Reset(out)
	w := &Walker{c: c, ctx: ctx, out: bw, hooks: hooks, info: info,
		log: c.Logger, filter: true}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.info.Client == "" {
		w.info.Client = "unknown"
	}
	w.hdrLimit, w.lineLimit, w.bodyLimit, w.nestLimit, w.boundLimit = c.limits()
	if !c.DisableMIMEInputProcessing {
		// cleanup_message.c: the strict tests and the nesting report.
		w.report8bitHeader = c.Strict8bitMIME || c.Strict7bitHeaders
		w.report8bitBody = c.Strict8bitMIME || c.Strict8bitMIMEBody
		w.reportDomain = c.StrictMIMEEncodingDomain
		w.reportNesting = w.report8bitHeader || w.report8bitBody || w.reportDomain ||
			c.HeaderChecks != nil || c.MIMEHeaderChecks != nil || c.NestedHeaderChecks != nil
	}
	w.setMIMEState(statePrimary, ctypeText, stypePlain)
	return w
}

// outPool keeps the Walkers' output buffers: one 32 KiB buffer per message
// was most of what a message through cleanup allocated.
var outPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("contentcheck: write after Close")

// Write takes the next bytes of the message, in any chunking.
func (w *Walker) Write(p []byte) (int, error) {
	if w.closed {
		return 0, ErrClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			// A line longer than line_length_limit goes on in pieces, as
			// the SMTP server hands it to cleanup in records of that size;
			// so memory stays bounded whatever the line length.
			k := 0
			for len(w.partial)-k > w.lineLimit {
				w.piece(w.partial[k:k+w.lineLimit], true, nil)
				k += w.lineLimit
			}
			if k > 0 {
				w.partial = append(w.partial[:0], w.partial[k:]...)
			}
			break
		}
		line := p[:i+1]
		p = p[i+1:]
		if len(w.partial) > 0 {
			w.partial = append(w.partial, line...)
			w.line(w.partial)
			w.partial = w.partial[:0]
		} else {
			w.line(line)
		}
	}
	return n, w.err
}

// line handles one physical line with its terminator (LF or CRLF).
func (w *Walker) line(raw []byte) {
	var term []byte
	content := raw
	if n := len(raw); n > 0 && raw[n-1] == '\n' {
		if n > 1 && raw[n-2] == '\r' {
			content, term = raw[:n-2], raw[n-2:]
		} else {
			content, term = raw[:n-1], raw[n-1:]
		}
	}
	for len(content) > w.lineLimit {
		w.piece(content[:w.lineLimit], true, nil)
		content = content[w.lineLimit:]
	}
	w.piece(content, false, term)
}

// piece is one record: a line, or a line_length_limit piece of one (cont
// is true for every piece but the last). term is the line terminator of
// the last piece.
func (w *Walker) piece(text []byte, cont bool, term []byte) {
	// cleanup_replace_stray_cr_lf: a CR inside a line becomes a space, in
	// what is inspected and in what is stored, without touching the
	// caller's buffer.
	if bytes.IndexByte(text, '\r') >= 0 {
		w.scratch = appendMasked(w.scratch[:0], text)
		text = w.scratch
	}
	if w.state != stateBody {
		if w.headerPiece(text, cont, term) {
			w.prevCont = cont
			return
		}
	}
	w.bodyPiece(text, cont, term)
	w.prevCont = cont
}

// headerPiece handles a piece in a header state; it returns false when
// the piece ended the header block and is to be handled as body text.
func (w *Walker) headerPiece(text []byte, cont bool, term []byte) bool {
	if len(w.hdrKey) > 0 {
		if w.prevCont || (len(text) > 0 && (text[0] == ' ' || text[0] == '\t')) {
			newLine := !w.prevCont
			// header_size_limit: once the header holds that much, what
			// follows is dropped (mime_state.c).
			if len(w.hdrKey) < w.hdrLimit {
				if newLine {
					w.hdrKey = append(w.hdrKey, '\n')
				}
				w.hdrKey = append(w.hdrKey, text...)
				w.hdrRaw = append(w.hdrRaw, text...)
				w.lineKept = true
			} else if newLine {
				w.lineKept = false
			}
			if !cont && w.lineKept {
				w.hdrRaw = append(w.hdrRaw, term...)
			}
			return true
		}
		w.flushHeader()
	}
	if n := isHeader(text); n > 0 {
		rest := text[n:]
		for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
			rest = rest[1:]
		}
		w.hdrKey = append(append(w.hdrKey[:0], text[:n]...), rest...)
		w.hdrName = n
		w.hdrRaw = append(w.hdrRaw[:0], text...)
		w.lineKept = true
		if !cont {
			w.hdrRaw = append(w.hdrRaw, term...)
		}
		return true
	}
	// The header block ends here.
	w.endHeaderBlock()
	if len(text) == 0 && !cont {
		w.bodyOffset = 0
		switch {
		case w.ctype == ctypeMessage && (w.stype == stypeRFC822 || w.stype == stypeGlobal):
			// A message/rfc822 part starts with headers of its own.
			w.setMIMEState(stateNested, ctypeText, stypePlain)
		case w.ctype == ctypeMultipart:
			w.setMIMEState(stateBody, ctypeOther, stypeOther)
		default:
			w.setState(stateBody)
		}
		return false
	}
	// Not a header and not a blank line. In the primary headers Postfix
	// inserts the missing blank line; in a part it does not (that would
	// break signatures). Either way the line is body text.
	if w.state == statePrimary {
		w.bodyOut(nil, false, crlf)
	}
	w.setState(stateBody)
	return false
}

var crlf = []byte("\r\n")

// endHeaderBlock runs at the end of each block of headers.
func (w *Walker) endHeaderBlock() {
	if w.state == statePrimary && !w.headersDone {
		w.headersDone = true
		if w.outOK() && w.hooks.EndOfHeaders != nil {
			w.keep(w.hooks.EndOfHeaders(w.out))
		}
	}
	// strict_mime_encoding_domain: message/* and multipart/* allow only the
	// identity encodings (RFC 2045 6.4, RFC 2046 5.2.1).
	if w.reportDomain {
		bad := false
		switch w.ctype {
		case ctypeMessage:
			switch w.stype {
			case stypePartial, stypeExternBody:
				bad = w.domain != enc7bit
			case stypeRFC822:
				bad = w.encoding != w.domain
			}
		case ctypeMultipart:
			bad = w.encoding != w.domain
		}
		if bad {
			w.mimeError(errEncodingDomain, []byte(encName(w.encoding)))
		}
	}
}

func encName(e int) string {
	return [...]string{"7bit", "8bit", "binary", "base64", "quoted-printable"}[e]
}

func (w *Walker) setMIMEState(state, ctype, stype int) {
	w.ctype, w.stype, w.encoding, w.domain = ctype, stype, enc7bit, enc7bit
	w.setState(state)
}

func (w *Walker) setState(state int) {
	w.state = state
	if state == stateBody {
		w.bodyOffset = 0
	}
}

// bodyPiece handles a piece of body text: boundaries, then the output.
func (w *Walker) bodyPiece(text []byte, cont bool, term []byte) {
	if w.report8bitBody && w.encoding == enc7bit && w.mimeErrs&err8bitIn7bitBody == 0 && has8bit(text) {
		w.mimeError(err8bitIn7bitBody, text)
	}
	if len(w.stack) > 0 && !w.prevCont && len(text) > 2 && text[0] == '-' && text[1] == '-' {
		for i := len(w.stack) - 1; i >= 0; i-- {
			b := w.stack[i].text
			if len(text) >= 2+len(b) && bytes.Equal(text[2:2+len(b)], b) {
				sp := w.stack[i]
				w.stack = w.stack[:i+1]
				if len(text) >= 4+len(b) && text[2+len(b)] == '-' && text[3+len(b)] == '-' {
					w.stack = w.stack[:i]
					w.setMIMEState(stateBody, ctypeOther, stypeOther)
				} else {
					w.setMIMEState(stateMultipart, sp.defCtype, sp.defStype)
				}
				break
			}
		}
	}
	w.bodyOut(text, cont, term)
}

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// flushHeader handles a complete logical header.
func (w *Walker) flushHeader() {
	name := w.hdrKey[:w.hdrName]
	typ := headerType(name)
	if !w.c.DisableMIMEInputProcessing {
		switch typ {
		case hdrContentType:
			w.contentType()
		case hdrContentTransferEncoding:
			w.contentEncoding()
		}
	}
	if w.report8bitHeader && w.mimeErrs&err8bitInHeader == 0 && has8bit(w.hdrKey) {
		w.mimeError(err8bitInHeader, w.hdrKey)
	}
	w.headerOut(typ)
	w.hdrKey = w.hdrKey[:0]
	w.hdrRaw = w.hdrRaw[:0]
	w.prevCont = false
}

// contentType reads Content-Type as Postfix does: the type and subtype it
// cares about and every boundary parameter (several are all kept, so a
// second boundary cannot hide a part).
func (w *Walker) contentType() {
	v := w.hdrKey[w.hdrName+1:]
	toks, rest, ok := mimeTokens(v, 3, tspecials, ';', w.toks)
	w.toks = toks
	if !ok || len(toks) == 0 {
		return
	}
	sub := func(word string) bool { return len(toks) >= 3 && toks[1].kind == '/' && tokIs(toks[2], word) }
	switch {
	case tokIs(toks[0], "text"):
		w.ctype, w.stype = ctypeText, stypeOther
		if sub("plain") {
			w.stype = stypePlain
		}
	case tokIs(toks[0], "message"):
		w.ctype, w.stype = ctypeMessage, stypeOther
		switch {
		case sub("rfc822"):
			w.stype = stypeRFC822
		case sub("partial"):
			w.stype = stypePartial
		case sub("external-body"):
			w.stype = stypeExternBody
		case sub("global"):
			w.stype = stypeGlobal
		}
	case tokIs(toks[0], "multipart"):
		w.ctype = ctypeMultipart
		defC, defS := ctypeText, stypePlain
		if sub("digest") {
			defC, defS = ctypeMessage, stypeRFC822
		}
		for {
			toks, rest, ok = mimeTokens(rest, 3, tspecials, ';', w.toks)
			w.toks = toks
			if !ok {
				break
			}
			if len(toks) >= 3 && tokIs(toks[0], "boundary") && toks[1].kind == '=' {
				// mime_nesting_limit: Postfix's level starts at -1.
				if len(w.stack)-1 > w.nestLimit {
					if w.reportNesting {
						w.mimeError(errNesting, w.hdrKey)
					}
				} else {
					b := toks[2].text
					if len(b) > w.boundLimit {
						b = b[:w.boundLimit]
					}
					w.stack = append(w.stack, boundary{text: bytes.Clone(b), defCtype: defC, defStype: defS})
				}
			}
		}
	default:
		w.ctype = ctypeOther
	}
}

// contentEncoding reads Content-Transfer-Encoding; an unknown encoding
// leaves the current one alone.
func (w *Walker) contentEncoding() {
	v := w.hdrKey[w.hdrName+1:]
	toks, _, ok := mimeTokens(v, 1, specials822, 0, w.toks)
	w.toks = toks
	if !ok || len(toks) == 0 || toks[0].kind != tokWord || toks[0].quoted {
		return
	}
	switch t := toks[0].text; {
	case asciiEqualFold(t, "7bit"):
		w.encoding, w.domain = enc7bit, enc7bit
	case asciiEqualFold(t, "8bit"):
		w.encoding, w.domain = enc8bit, enc8bit
	case asciiEqualFold(t, "binary"):
		w.encoding, w.domain = encBinary, encBinary
	case asciiEqualFold(t, "base64"):
		w.encoding, w.domain = encBase64, enc7bit
	case asciiEqualFold(t, "quoted-printable"):
		w.encoding, w.domain = encQP, enc7bit
	}
}

// mimeError records a MIME error once and logs it as Postfix's cleanup
// does; header truncation is not an error there.
func (w *Walker) mimeError(flag int, text []byte) {
	if w.mimeErrs&flag != 0 {
		return
	}
	w.mimeErrs |= flag
	if flag == errTruncHeader {
		return
	}
	if len(text) > 100 {
		text = text[:100]
	}
	rcpt := w.info.Recipient
	if rcpt == "" {
		rcpt = "unknown"
	}
	w.logf(slog.LevelInfo, "%s: reject: mime-error %s: %s from %s; from=<%s> to=<%s>",
		w.info.QueueID, mimeErrorText(flag), text, w.info.Client, w.info.Sender, rcpt)
}

// outOK is Postfix's CLEANUP_OUT_OK: nothing more is written after a
// reject or a discard.
func (w *Walker) outOK() bool { return !w.stopped && !w.v.Discard && w.err == nil }

func (w *Walker) keep(err error) {
	if err != nil && w.err == nil {
		w.err = err
	}
}

func (w *Walker) write(b []byte) {
	if w.err == nil {
		_, err := w.out.Write(b)
		w.keep(err)
	}
}

// Table names as Postfix's warnings give them.
const (
	classHeader = "header"
	classBody   = "body"
)

// headerOut is cleanup's header callback: checks, then output.
func (w *Walker) headerOut(typ int) {
	if !w.outOK() {
		return
	}
	class := w.state
	raw := w.hdrRaw
	if len(w.hdrKey) > w.hdrLimit {
		raw = cutHeader(raw, w.hdrKey, w.hdrLimit)
	}
	h := &Header{Name: string(w.hdrKey[:w.hdrName]), Raw: bytes.Clone(raw), key: string(w.hdrKey)}
	if class == statePrimary && w.hooks.Seen != nil {
		w.hooks.Seen(h)
	}
	table, mapName := w.c.HeaderChecks, "header_checks"
	if typ != hdrOther || class == stateMultipart {
		table, mapName = w.c.MIMEHeaderChecks, "mime_header_checks"
	} else if class == stateNested {
		table, mapName = w.c.NestedHeaderChecks, "nested_header_checks"
	}
	if w.filter && table != nil {
		value, found := w.lookup(table, mapName, h.key)
		if found {
			drop, repl, replaced := w.act(classHeader, h.key, value, mapName)
			if drop {
				return
			}
			if replaced {
				h = &Header{Name: repl[:isHeader([]byte(repl))], Raw: []byte(repl + "\r\n"), key: repl}
			}
		}
	}
	if !w.outOK() {
		return
	}
	if class == statePrimary && w.hooks.Header != nil {
		w.keep(w.hooks.Header(h, w.out))
		return
	}
	w.write(h.Raw)
}

// bodyOut is cleanup's body callback.
func (w *Walker) bodyOut(text []byte, cont bool, term []byte) {
	off := w.bodyOffset
	w.bodyOffset += int64(len(text)) + 1
	if !w.outOK() {
		return
	}
	if w.filter && w.c.BodyChecks != nil && len(text) > 0 && (w.bodyLimit < 0 || off < int64(w.bodyLimit)) {
		key := string(text)
		if value, found := w.lookup(w.c.BodyChecks, "body_checks", key); found {
			drop, repl, replaced := w.act(classBody, key, value, "body_checks")
			if drop || !w.outOK() {
				return
			}
			if replaced {
				w.write([]byte(repl))
				if !cont {
					w.write(term)
				}
				return
			}
		}
	}
	w.write(text)
	if !cont {
		w.write(term)
	}
}

// lookup asks a table; a table error defers the message, as Postfix does.
func (w *Walker) lookup(m maps.Map, mapName, key string) (string, bool) {
	v, ok, err := m.Lookup(w.ctx, key)
	if err == nil && ok && v == "" {
		err = maps.ErrEmptyValue
	}
	if err != nil {
		w.logf(slog.LevelWarn, "warning: %s: %s map lookup problem -- message not accepted, try again later: %v",
			w.info.QueueID, mapName, err)
		if !w.reasonSet {
			w.reasonSet = true
			w.v.Reject = &restrictions.Reply{Code: 451, DSN: "4.3.0", Text: "Error: queue file write error"}
		}
		w.stopped = true
		w.filter = false
		return "", false
	}
	return v, ok
}

// act carries out one action (cleanup_act). It reports whether the line
// is to be dropped, or replaced by repl.
func (w *Walker) act(class, content, value, mapName string) (drop bool, repl string, replaced bool) {
	a := ParseAction(value)
	text := a.Text
	switch a.Kind {
	case Reject:
		r := a.Reply
		if a.Text != "" {
			if dsn, _ := splitDSN(a.Text); dsn != "" && dsn[0] != '4' && dsn[0] != '5' {
				w.logf(slog.LevelWarn, "warning: bad DSN action in %s -- need 4.x.x or 5.x.x", a.Text)
			}
		}
		w.v.Reject = &r
		w.reasonSet = true
		w.stopped = true
		w.filter = false
		w.actLog("reject", class, content, r.DSN+" "+r.Text)
	case Warn:
		w.actLog("warning", class, content, text)
	case Info:
		w.actLog("info", class, content, text)
	case Filter:
		switch {
		case text == "":
			w.logf(slog.LevelWarn, "warning: missing FILTER command argument in %s map", mapName)
		case strings.IndexByte(text, ':') < 0:
			w.logf(slog.LevelWarn, "warning: bad FILTER command %s in %s -- need transport:destination", text, mapName)
		default:
			w.v.Filter = text
			w.actLog("filter", class, content, text)
		}
	case Pass:
		w.actLog("pass", class, content, text)
		w.filter = false
	case Discard:
		w.actLog("discard", class, content, text)
		w.v.Discard, w.v.DiscardText = true, text
		w.filter = false
	case Hold:
		if !w.v.Hold && !w.v.Discard {
			w.actLog("hold", class, content, text)
			w.v.Hold, w.v.HoldText = true, text
		}
	case Prepend:
		switch {
		case text == "":
			w.logf(slog.LevelWarn, "warning: PREPEND action without text in %s map", mapName)
		case class == classHeader && isHeader([]byte(text)) == 0:
			w.logf(slog.LevelWarn, "warning: bad PREPEND header text \"%s\" in %s map -- need \"headername: headervalue\"", text, mapName)
		default:
			w.actLog("prepend", class, content, text)
			w.write([]byte(text))
			w.write(crlf)
		}
	case Replace:
		switch {
		case text == "":
			w.logf(slog.LevelWarn, "warning: REPLACE action without text in %s map", mapName)
		case class == classHeader && isHeader([]byte(text)) == 0:
			w.logf(slog.LevelWarn, "warning: bad REPLACE header text \"%s\" in %s map -- need \"headername: headervalue\"", text, mapName)
		default:
			w.actLog("replace", class, content, text)
			return false, text, true
		}
	case Redirect:
		if !hasAt(text) {
			w.logf(slog.LevelWarn, "warning: bad REDIRECT target \"%s\" in %s map -- need user@domain", text, mapName)
		} else {
			w.v.Redirect = text
			w.actLog("redirect", class, content, text)
			w.filter = false
		}
	case BCC:
		if !hasAt(text) {
			w.logf(slog.LevelWarn, "warning: bad BCC address \"%s\" in %s map -- need user@domain", text, mapName)
		} else {
			// Every BCC is logged; the list keeps each address once, as
			// cleanup adds each recipient once.
			if !slices.Contains(w.v.BCC, text) {
				w.v.BCC = append(w.v.BCC, text)
			}
			w.actLog("bcc", class, content, text)
		}
	case Strip:
		w.actLog("strip", class, content, text)
		return true, "", false
	case Ignore:
		return true, "", false
	case Dunno:
		if a.Unknown {
			w.logf(slog.LevelWarn, "warning: unknown command in %s map: %s", mapName, value)
		}
	}
	return false, "", false
}

// actLog logs an action in cleanup_act_log's layout; the content is cut at
// 200 bytes.
func (w *Walker) actLog(action, class, content, text string) {
	if !w.log.Enabled(w.ctx, slog.LevelInfo) {
		return
	}
	if len(content) > 200 {
		content = content[:200]
	}
	var b strings.Builder
	b.WriteString(w.info.QueueID + ": " + action + ": " + class + " " + content + " from " + w.info.Client + ";")
	b.WriteString(" from=<" + w.info.Sender + ">")
	if w.info.Recipient != "" {
		b.WriteString(" to=<" + w.info.Recipient + ">")
	}
	if w.info.Proto != "" {
		b.WriteString(" proto=" + w.info.Proto)
	}
	if w.info.Helo != "" {
		b.WriteString(" helo=<" + w.info.Helo + ">")
	}
	if text != "" {
		b.WriteString(": " + text)
	}
	w.log.LogAttrs(w.ctx, slog.LevelInfo, printable(b.String()), slog.String("queue_id", w.info.QueueID))
}

// printable replaces what Postfix's logging replaces with '?': control
// characters (the newline of a folded header among them) and bytes that
// are not UTF-8.
func printable(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= 0x80 {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				b.WriteByte('?')
				continue
			}
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (w *Walker) logf(level slog.Level, format string, args ...any) {
	if !w.log.Enabled(w.ctx, level) {
		return
	}
	w.log.LogAttrs(w.ctx, level, printable(fmt.Sprintf(format, args...)), slog.String("queue_id", w.info.QueueID))
}

// Close ends the message: it handles a last line without terminator,
// finishes the header block if the message had no body, flushes the
// output and returns the verdict. The error is an output or hook error;
// a rejected message is a Verdict, not an error.
func (w *Walker) Close() (Verdict, error) {
	if w.closed {
		return w.v, ErrClosed
	}
	if len(w.partial) > 0 {
		w.line(w.partial)
		w.partial = w.partial[:0]
	}
	w.closed = true
	if w.state != stateBody {
		if len(w.hdrKey) > 0 {
			w.flushHeader()
		}
		w.endHeaderBlock()
		w.setState(stateBody)
	}
	// cleanup_message.c: a MIME error rejects the message unless a check
	// already gave a reason; a truncated header does not.
	if errs := w.mimeErrs &^ errTruncHeader; errs != 0 && !w.reasonSet {
		w.reasonSet = true
		w.v.Reject = &restrictions.Reply{Code: 550, DSN: "5.6.0", Text: mimeErrorText(errs)}
	}
	if w.err == nil {
		w.keep(w.out.Flush())
	}
	// The buffer goes back to the pool; nothing writes after Close.
	w.out.Reset(nil)
	outPool.Put(w.out)
	w.out = nil
	if w.err != nil {
		return w.v, fmt.Errorf("contentcheck: write message: %w", w.err)
	}
	return w.v, nil
}

// cutHeader shortens a stored header to header_size_limit as cleanup's
// cleanup_out_header does: at the last line boundary when that keeps more
// than 90% of the limit, else in the middle of the line at exactly the
// limit (counted in the key's form, one byte per line break). raw and key
// hold the same lines; a cut line gets raw's line terminator.
func cutHeader(raw, key []byte, limit int) []byte {
	var out []byte
	keyOff := 0
	for len(raw) > 0 && keyOff <= len(key) {
		rawLine := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			rawLine = raw[:i+1]
		}
		content, term := rawLine, []byte(nil)
		if n := len(content); n > 0 && content[n-1] == '\n' {
			content, term = content[:n-1], content[n-1:]
			if n := len(content); n > 0 && content[n-1] == '\r' {
				content, term = content[:n-1], rawLine[n-1:]
			}
		}
		keyLen := bytes.IndexByte(key[keyOff:], '\n')
		if keyLen < 0 {
			keyLen = len(key) - keyOff
		}
		if keyOff+keyLen > limit {
			if float64(keyOff) > 0.9*float64(limit) {
				break
			}
			// The key's first line may be shorter than the raw one (blanks
			// before the colon); what is cut is the end of the line.
			n := limit - keyOff + (len(content) - keyLen)
			out = append(out, content[:max(0, min(n, len(content)))]...)
			return append(out, term...)
		}
		out = append(out, rawLine...)
		raw = raw[len(rawLine):]
		keyOff += keyLen + 1
	}
	return out
}
