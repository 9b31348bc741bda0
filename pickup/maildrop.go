package pickup

// The maildrop file format. One file is one submitted message: the
// content, then a text envelope, then a fixed-size trailer that makes a
// torn or altered file detectable.
//
//	postkit-maildrop 1
//	CONTENT: CRLF-terminated lines, dot-stuffing removed
//	arrival 2026-11-28T04:00:00.123456789Z
//	uid 1000
//	user "alice"
//	sender "alice"
//	fullname "Alice Example"
//	extract yes
//	rewrite local
//	proto local
//	rcpt "bob@example.com"
//	notify "SUCCESS,FAILURE"
//	end CONTENTSIZE(20 digits) ENVELOPESIZE(20 digits) SHA256(64 hex digits)
//
// The envelope comes after the content because a writer does not always
// know it at the start: an SMTP session (sendmail -bs) learns its last
// recipient after the first, and sendmail -t checks the headers it has
// read. So both stream the content and write the envelope at the end.
//
// Values that hold user input are Go-quoted (strconv.Quote), so a newline or
// a NUL in an address can neither end a line early nor smuggle a field in.
// A "notify" line belongs to the "rcpt" line before it. Unknown keywords are
// an error: a reader never guesses at what a newer writer meant.
//
// The trailer has a fixed length (TrailerLen bytes) so the reader finds it
// from the end of the file without scanning the content. Its sizes locate
// the content and the envelope; the SHA-256 covers everything before it. A
// file that was cut short (a crash between write and fsync on a file
// system that does not order them), or changed afterwards, fails the check
// and is moved aside rather than fed to cleanup.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"
)

// Magic is the first line of a maildrop file, with the format version.
const Magic = "postkit-maildrop 1"

// TrailerLen is the length of the "end CSIZE ESIZE SHA256\n" trailer.
const TrailerLen = len("end ") + 20 + 1 + 20 + 1 + 64 + 1

// Limits on the envelope part, so that a hostile file cannot make the
// reader allocate without bound. The content is never held in memory.
const (
	maxEnvelopeLine  = 64 << 10 // one envelope line
	maxEnvelopeBytes = 64 << 20 // the whole envelope (many recipients)
)

// Envelope is what a maildrop file says about its message besides the
// content.
type Envelope struct {
	// Arrival is when the message was submitted.
	Arrival time.Time
	// UID and User identify the submitting user as the writer saw them.
	// The pickup service trusts the file owner's uid, not this field,
	// and logs a warning when they differ.
	UID  int
	User string
	// Sender is the envelope sender in internal form; "" is the null
	// sender. sendmail fills in the login name when -f is not given
	// (cleanup appends @$myorigin).
	Sender string
	// FullName is sendmail -F (or $NAME): used by cleanup for a From:
	// header it adds.
	FullName string
	// ExtractRecipients is sendmail -t: cleanup takes recipients from
	// To:, Cc: and Bcc: (or their Resent- forms), in addition to
	// Recipients.
	ExtractRecipients bool
	// Local is the rewriting context: true ("local") for ordinary
	// submissions, false ("remote") for sendmail -G.
	Local bool
	// Proto is "local" for a message read by sendmail from standard
	// input, or the SMTP protocol name ("SMTP", "ESMTP") of a sendmail
	// -bs session, whose content starts with the SMTP server's Received:
	// header. pickup adds its own Received: header to both, as Postfix's
	// does.
	Proto string
	// Helo is the HELO/EHLO name of a sendmail -bs session.
	Helo string
	// Recipients are the envelope recipients (command-line arguments or
	// RCPT TO), in internal form.
	Recipients []Recipient
	// DSN: sendmail -B (BODY=), -R (RET=), -V (ENVID=).
	Body, Ret, EnvID string
	// SMTPUTF8 is the SMTPUTF8 parameter of a -bs MAIL FROM.
	SMTPUTF8 bool
}

// Recipient is one envelope recipient.
type Recipient struct {
	Addr   string
	Notify []string // DSN NOTIFY (sendmail -N): NEVER, or SUCCESS, FAILURE, DELAY
}

// ErrCorrupt is wrapped by every error that says a maildrop file is
// damaged or not a maildrop file at all (as opposed to an I/O error).
var ErrCorrupt = errors.New("corrupt maildrop file")

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// encodeEnvelope renders the envelope part.
func encodeEnvelope(env *Envelope) ([]byte, error) {
	var b bytes.Buffer
	arrival := env.Arrival
	if arrival.IsZero() {
		return nil, errors.New("pickup: envelope without arrival time")
	}
	fmt.Fprintf(&b, "arrival %s\n", arrival.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "uid %d\n", env.UID)
	fmt.Fprintf(&b, "user %s\n", strconv.Quote(env.User))
	fmt.Fprintf(&b, "sender %s\n", strconv.Quote(env.Sender))
	if env.FullName != "" {
		fmt.Fprintf(&b, "fullname %s\n", strconv.Quote(env.FullName))
	}
	if env.ExtractRecipients {
		b.WriteString("extract yes\n")
	}
	if env.Local {
		b.WriteString("rewrite local\n")
	} else {
		b.WriteString("rewrite remote\n")
	}
	proto := env.Proto
	if proto == "" {
		proto = "local"
	}
	if !isToken(proto) {
		return nil, fmt.Errorf("pickup: bad protocol name %q", proto)
	}
	fmt.Fprintf(&b, "proto %s\n", proto)
	if env.Helo != "" {
		fmt.Fprintf(&b, "helo %s\n", strconv.Quote(env.Helo))
	}
	if env.Body != "" {
		fmt.Fprintf(&b, "body %s\n", strconv.Quote(env.Body))
	}
	if env.Ret != "" {
		fmt.Fprintf(&b, "ret %s\n", strconv.Quote(env.Ret))
	}
	if env.EnvID != "" {
		fmt.Fprintf(&b, "envid %s\n", strconv.Quote(env.EnvID))
	}
	if env.SMTPUTF8 {
		b.WriteString("smtputf8 yes\n")
	}
	for _, r := range env.Recipients {
		fmt.Fprintf(&b, "rcpt %s\n", strconv.Quote(r.Addr))
		if len(r.Notify) > 0 {
			fmt.Fprintf(&b, "notify %s\n", strconv.Quote(strings.Join(r.Notify, ",")))
		}
	}
	if b.Len() > maxEnvelopeBytes {
		return nil, fmt.Errorf("pickup: envelope of %d bytes is larger than %d", b.Len(), maxEnvelopeBytes)
	}
	return b.Bytes(), nil
}

func isToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Encoder writes one maildrop file to w: the first line at once, the
// content through Write, the envelope and the trailer at Close.
type Encoder struct {
	w     io.Writer
	h     hash.Hash
	csize int64
	err   error
}

// NewEncoder writes the first line to w and returns an Encoder for the
// content.
func NewEncoder(w io.Writer) (*Encoder, error) {
	e := &Encoder{w: w, h: sha256.New()}
	head := Magic + "\n"
	e.h.Write([]byte(head))
	if _, err := io.WriteString(w, head); err != nil {
		return nil, fmt.Errorf("pickup: write maildrop file: %w", err)
	}
	return e, nil
}

// Write appends content.
func (e *Encoder) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.h.Write(p[:n])
	e.csize += int64(n)
	if err != nil {
		e.err = fmt.Errorf("pickup: write content: %w", err)
		return n, e.err
	}
	return n, nil
}

// Size is the content length written so far.
func (e *Encoder) Size() int64 { return e.csize }

// Close writes the envelope and the trailer. It does not close the
// underlying writer.
func (e *Encoder) Close(env *Envelope) error {
	if e.err != nil {
		return e.err
	}
	ebytes, err := encodeEnvelope(env)
	if err != nil {
		return err
	}
	e.h.Write(ebytes)
	if _, err := e.w.Write(ebytes); err != nil {
		return fmt.Errorf("pickup: write envelope: %w", err)
	}
	t := fmt.Sprintf("end %020d %020d %s\n", e.csize, len(ebytes), hex.EncodeToString(e.h.Sum(nil)))
	if len(t) != TrailerLen {
		return fmt.Errorf("pickup: internal error: trailer of %d bytes", len(t))
	}
	if _, err := io.WriteString(e.w, t); err != nil {
		return fmt.Errorf("pickup: write trailer: %w", err)
	}
	e.err = errors.New("pickup: maildrop file already closed")
	return nil
}

// Decode reads a maildrop file of the given size from r. It checks the
// whole file (layout, envelope syntax and checksum) before it returns; the
// content is then readable from the returned section, which reads r
// again. Errors that mean the file is damaged wrap ErrCorrupt.
func Decode(r io.ReaderAt, size int64) (*Envelope, *io.SectionReader, error) {
	head := int64(len(Magic) + 1)
	if size < head+int64(TrailerLen) {
		return nil, nil, corruptf("file of %d bytes is too short", size)
	}
	var tb [TrailerLen]byte
	if _, err := r.ReadAt(tb[:], size-int64(TrailerLen)); err != nil {
		return nil, nil, fmt.Errorf("pickup: read trailer: %w", err)
	}
	csize, esize, sum, err := parseTrailer(tb[:])
	if err != nil {
		return nil, nil, err
	}
	body := size - int64(TrailerLen)
	if csize > body || esize > body || head+csize+esize != body {
		return nil, nil, corruptf("sizes in the trailer (content %d, envelope %d) do not add up to the file's %d bytes", csize, esize, size)
	}
	if esize > maxEnvelopeBytes {
		return nil, nil, corruptf("envelope larger than %d bytes", maxEnvelopeBytes)
	}
	var hb [len(Magic) + 1]byte
	if _, err := r.ReadAt(hb[:], 0); err != nil {
		return nil, nil, fmt.Errorf("pickup: read first line: %w", err)
	}
	if string(hb[:]) != Magic+"\n" {
		return nil, nil, corruptf("not a maildrop file (first line %q)", truncate(string(hb[:])))
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, body)); err != nil {
		return nil, nil, fmt.Errorf("pickup: read for checksum: %w", err)
	}
	if !bytes.Equal(h.Sum(nil), sum) {
		return nil, nil, corruptf("checksum mismatch")
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r, head+csize, esize), 32<<10)
	env, err := parseEnvelope(br)
	if err != nil {
		return nil, nil, err
	}
	return env, io.NewSectionReader(r, head, csize), nil
}

func parseTrailer(t []byte) (csize, esize int64, sum []byte, err error) {
	s := string(t)
	if !strings.HasPrefix(s, "end ") || s[len(s)-1] != '\n' || s[24] != ' ' || s[45] != ' ' {
		return 0, 0, nil, corruptf("no end trailer (file cut short?)")
	}
	num := func(d string) (int64, bool) {
		for i := 0; i < len(d); i++ {
			if d[i] < '0' || d[i] > '9' {
				return 0, false
			}
		}
		n, err := strconv.ParseInt(d, 10, 64)
		return n, err == nil
	}
	var ok1, ok2 bool
	csize, ok1 = num(s[4:24])
	esize, ok2 = num(s[25:45])
	if !ok1 || !ok2 {
		return 0, 0, nil, corruptf("bad sizes in the trailer")
	}
	hexsum := s[46 : 46+64]
	sum, err = hex.DecodeString(hexsum)
	if err != nil || strings.ToLower(hexsum) != hexsum {
		return 0, 0, nil, corruptf("bad checksum in the trailer")
	}
	return csize, esize, sum, nil
}

// parseEnvelope reads the envelope lines up to the end of br.
func parseEnvelope(br *bufio.Reader) (*Envelope, error) {
	env := &Envelope{}
	lineNo := 0
	seen := map[string]bool{}
	haveArrival, haveSender, haveRewrite, haveProto := false, false, false, false
	for {
		line, err := readLine(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
		lineNo++
		key, val, ok := strings.Cut(line, " ")
		if !ok {
			return nil, corruptf("envelope line %d: %q has no value", lineNo, truncate(line))
		}
		bad := func(what string) error {
			return corruptf("envelope line %d: bad %s %q", lineNo, what, truncate(val))
		}
		switch key {
		case "rcpt", "notify":
		default:
			if seen[key] {
				return nil, corruptf("envelope line %d: second %q line", lineNo, key)
			}
			seen[key] = true
		}
		switch key {
		case "arrival":
			t, err := time.Parse(time.RFC3339Nano, val)
			if err != nil || t.IsZero() {
				return nil, bad("arrival time")
			}
			env.Arrival, haveArrival = t.UTC(), true
		case "uid":
			u, err := strconv.Atoi(val)
			if err != nil || u < 0 {
				return nil, bad("uid")
			}
			env.UID = u
		case "user", "sender", "fullname", "helo", "body", "ret", "envid":
			s, err := strconv.Unquote(val)
			if err != nil || !strings.HasPrefix(val, `"`) {
				return nil, bad(key)
			}
			switch key {
			case "user":
				env.User = s
			case "sender":
				env.Sender, haveSender = s, true
			case "fullname":
				env.FullName = s
			case "helo":
				env.Helo = s
			case "body":
				env.Body = s
			case "ret":
				env.Ret = s
			case "envid":
				env.EnvID = s
			}
		case "extract", "smtputf8":
			if val != "yes" {
				return nil, bad(key)
			}
			if key == "extract" {
				env.ExtractRecipients = true
			} else {
				env.SMTPUTF8 = true
			}
		case "rewrite":
			switch val {
			case "local":
				env.Local = true
			case "remote":
			default:
				return nil, bad("rewrite context")
			}
			haveRewrite = true
		case "proto":
			if !isToken(val) {
				return nil, bad("protocol")
			}
			env.Proto, haveProto = val, true
		case "rcpt":
			s, err := strconv.Unquote(val)
			if err != nil || !strings.HasPrefix(val, `"`) {
				return nil, bad("recipient")
			}
			env.Recipients = append(env.Recipients, Recipient{Addr: s})
			delete(seen, "notify")
		case "notify":
			s, err := strconv.Unquote(val)
			if err != nil || !strings.HasPrefix(val, `"`) || len(env.Recipients) == 0 || seen["notify"] || s == "" {
				return nil, bad("notify")
			}
			seen["notify"] = true
			env.Recipients[len(env.Recipients)-1].Notify = strings.Split(s, ",")
		default:
			return nil, corruptf("envelope line %d: unknown keyword %q", lineNo, truncate(key))
		}
	}
	switch {
	case !haveArrival:
		return nil, corruptf("envelope without arrival time")
	case !haveSender:
		return nil, corruptf("envelope without sender")
	case !haveRewrite:
		return nil, corruptf("envelope without rewrite context")
	case !haveProto:
		return nil, corruptf("envelope without protocol")
	}
	return env, nil
}

// readLine reads one LF-terminated line without the LF, refusing lines
// longer than maxEnvelopeLine.
func readLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		frag, err := br.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > maxEnvelopeLine {
			return "", corruptf("envelope line longer than %d bytes", maxEnvelopeLine)
		}
		if err == nil {
			return string(buf[:len(buf)-1]), nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			if len(buf) > 0 {
				return "", corruptf("envelope ends inside a line")
			}
			return "", io.EOF
		}
		return "", fmt.Errorf("pickup: read envelope: %w", err)
	}
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
