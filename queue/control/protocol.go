package control

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/postkit-mail/postkit/queue"
)

// Limits of a request.
const (
	// MaxLine is the longest request line, LF included.
	MaxLine = 1024
	// MaxArg is the longest argument.
	MaxArg = 512
	// MaxID is the longest queue ID line (postsuper accepts up to 100
	// characters), so that MaxIDs lines stay within 100 MB.
	MaxID = 100
	// MaxIDs is the most ID lines one request may carry (postsuper -
	// reading IDs from its standard input).
	MaxIDs = 1 << 20
	// maxChunk is the largest data record of a reply.
	maxChunk = 32 << 10
)

// Verb names a request.
type Verb string

// The request verbs.
const (
	VerbMailq     Verb = "mailq"      // postqueue -p
	VerbMailqJSON Verb = "mailq-json" // postqueue -j
	VerbFlush     Verb = "flush"      // postqueue -f
	VerbFlushSite Verb = "flush-site" // postqueue -s SITE
	VerbDeliver   Verb = "deliver"    // postqueue -i ID
	VerbPostcat   Verb = "postcat"    // postcat -q ID [-h] [-b] [-e]
	VerbDelete    Verb = "delete"     // postsuper -d
	VerbHold      Verb = "hold"       // postsuper -h
	VerbRelease   Verb = "release"    // postsuper -H
	VerbRequeue   Verb = "requeue"    // postsuper -r
	VerbExpire    Verb = "expire"     // postsuper -e (-f: expire, then release)
)

var adminVerbs = map[Verb]queue.AdminOp{VerbDelete: queue.AdminDelete, VerbHold: queue.AdminHold,
	VerbRelease: queue.AdminRelease, VerbRequeue: queue.AdminRequeue, VerbExpire: queue.AdminExpire}

// AdminVerb returns the verb of a postsuper operation.
func AdminVerb(op queue.AdminOp) Verb {
	for v, o := range adminVerbs {
		if o == op {
			return v
		}
	}
	return ""
}

// Request is one parsed request.
type Request struct {
	Verb Verb
	// Arg is the site (flush-site) or the queue ID (deliver, postcat).
	Arg string
	// Postcat is postcat's -e/-h/-b.
	Postcat queue.PostcatOptions
	// States are the queues an admin verb is limited to (none: the
	// operation's default).
	States []queue.State
	// IDs are an admin verb's queue IDs; All means ALL (IDs is then nil,
	// and never nil otherwise).
	IDs []string
	All bool
}

// Op returns the postsuper operation of an admin request, 0 otherwise.
func (r *Request) Op() queue.AdminOp { return adminVerbs[r.Verb] }

// errProtocol marks a request the server cannot parse.
var errProtocol = errors.New("control: bad request")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, args...))
}

// readLine reads one LF-terminated line of at most MaxLine bytes, all
// printable ASCII and spaces.
func readLine(br *bufio.Reader) (string, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > MaxLine {
			return "", protoErr("line longer than %d bytes", MaxLine)
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			if len(line) == 0 {
				return "", io.ErrUnexpectedEOF
			}
			return "", protoErr("line not terminated")
		}
		return "", err
	}
	line = line[:len(line)-1]
	for _, c := range line {
		if c < ' ' || c > '~' {
			return "", protoErr("byte %#02x in a request line", c)
		}
	}
	return string(line), nil
}

// ParseRequest reads one request: a line "VERB [ARG...]" with fields
// separated by single spaces, and for the admin verbs one queue ID (or
// ALL) per line up to an empty line. See the package doc.
func ParseRequest(r io.Reader) (*Request, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 4096)
	}
	line, err := readLine(br)
	if err != nil {
		return nil, err
	}
	f := strings.Split(line, " ")
	for _, x := range f {
		if x == "" {
			return nil, protoErr("empty field in %q", line)
		}
		if len(x) > MaxArg {
			return nil, protoErr("field longer than %d bytes", MaxArg)
		}
	}
	req := &Request{Verb: Verb(f[0])}
	args := f[1:]
	want := func(n int) error {
		if len(args) != n {
			return protoErr("%s takes %d argument(s), got %d", req.Verb, n, len(args))
		}
		return nil
	}
	switch req.Verb {
	case VerbMailq, VerbMailqJSON, VerbFlush:
		if err := want(0); err != nil {
			return nil, err
		}
	case VerbFlushSite:
		if err := want(1); err != nil {
			return nil, err
		}
		req.Arg = args[0]
	case VerbDeliver:
		if err := want(1); err != nil {
			return nil, err
		}
		req.Arg = args[0]
	case VerbPostcat:
		if err := want(2); err != nil {
			return nil, err
		}
		req.Arg = args[0]
		if args[1] != "-" {
			for _, c := range args[1] {
				switch c {
				case 'e':
					req.Postcat.Envelope = true
				case 'h':
					req.Postcat.Header = true
				case 'b':
					req.Postcat.Body = true
				default:
					return nil, protoErr("postcat option %q", c)
				}
			}
		}
	case VerbDelete, VerbHold, VerbRelease, VerbRequeue, VerbExpire:
		for _, a := range args {
			s := queue.State(a)
			if !validQueue(s) {
				return nil, protoErr("no queue %q", a)
			}
			req.States = append(req.States, s)
		}
		for n := 0; ; n++ {
			id, err := readLine(br)
			if err != nil {
				if err == io.ErrUnexpectedEOF {
					return nil, protoErr("%s: ID list not ended by an empty line", req.Verb)
				}
				return nil, err
			}
			if id == "" {
				break
			}
			if n >= MaxIDs {
				return nil, protoErr("more than %d IDs", MaxIDs)
			}
			if id == "ALL" {
				req.All = true
				continue
			}
			if strings.ContainsRune(id, ' ') || len(id) > MaxID {
				return nil, protoErr("bad queue ID %q", id)
			}
			req.IDs = append(req.IDs, id)
		}
		if req.All {
			req.IDs = nil
		} else if req.IDs == nil {
			req.IDs = []string{} // no IDs is not ALL
		}
	default:
		return nil, protoErr("unknown verb %q", f[0])
	}
	return req, nil
}

func validQueue(s queue.State) bool {
	for _, t := range queue.States {
		if s == t {
			return true
		}
	}
	return false
}

// Encode writes the request in the wire format ParseRequest reads.
func (r *Request) Encode(w io.Writer) error {
	var b bytes.Buffer
	b.WriteString(string(r.Verb))
	check := func(s string) error {
		if s == "" || strings.ContainsAny(s, " \n") || len(s) > MaxArg {
			return fmt.Errorf("control: %s: bad argument %q", r.Verb, s)
		}
		for _, c := range []byte(s) {
			if c < ' ' || c > '~' {
				return fmt.Errorf("control: %s: bad argument %q", r.Verb, s)
			}
		}
		return nil
	}
	switch r.Verb {
	case VerbFlushSite, VerbDeliver:
		if err := check(r.Arg); err != nil {
			return err
		}
		b.WriteString(" " + r.Arg)
	case VerbPostcat:
		if err := check(r.Arg); err != nil {
			return err
		}
		o := ""
		if r.Postcat.Envelope {
			o += "e"
		}
		if r.Postcat.Header {
			o += "h"
		}
		if r.Postcat.Body {
			o += "b"
		}
		if o == "" {
			o = "-"
		}
		b.WriteString(" " + r.Arg + " " + o)
	}
	if r.Op() != 0 {
		for _, s := range r.States {
			b.WriteString(" " + string(s))
		}
		b.WriteByte('\n')
		if r.All {
			b.WriteString("ALL\n")
		}
		for _, id := range r.IDs {
			if err := check(id); err != nil {
				return err
			}
			if len(id) > MaxID {
				return fmt.Errorf("control: %s: queue ID %q longer than %d bytes", r.Verb, id, MaxID)
			}
			if id == "ALL" {
				// On the wire this line means every message; no queue
				// ID is spelled "ALL" (queue.ValidID), so refuse rather
				// than widen the request.
				return fmt.Errorf("control: %s: \"ALL\" among the queue IDs (use Request.All)", r.Verb)
			}
			b.WriteString(id + "\n")
		}
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// Error kinds of an "error" reply.
const (
	KindBadRequest  = "bad-request" // the request did not parse
	KindNotFound    = "not-found"   // no such message
	KindUnavailable = "unavailable" // no scheduler runs (flush, deliver)
	KindFailed      = "failed"      // the operation failed
)

// Error is the error a server replied with.
type Error struct {
	Kind string
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// replyWriter writes the records of a reply.
type replyWriter struct {
	w *bufio.Writer
}

// Write sends p as data records.
func (rw *replyWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), maxChunk)
		fmt.Fprintf(rw.w, "data %d\n", c)
		if _, err := rw.w.Write(p[:c]); err != nil {
			return n, err
		}
		n += c
		p = p[c:]
	}
	return n, nil
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

func (rw *replyWriter) warning(msg string) { fmt.Fprintf(rw.w, "warning %s\n", oneLine(msg)) }

func (rw *replyWriter) ok(n int) error {
	fmt.Fprintf(rw.w, "ok %d\n", n)
	return rw.w.Flush()
}

func (rw *replyWriter) fail(kind, msg string) error {
	fmt.Fprintf(rw.w, "error %s %s\n", kind, oneLine(msg))
	return rw.w.Flush()
}

// readReply reads a reply's records: data goes to out, warnings to warn;
// it returns the count of an "ok" or the *Error of an "error".
func readReply(r io.Reader, out io.Writer, warn func(string)) (int, error) {
	br := bufio.NewReaderSize(r, maxChunk+64)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				return 0, errors.New("control: the server closed the connection before the end of its reply")
			}
			return 0, fmt.Errorf("control: reading the reply: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		word, rest, _ := strings.Cut(line, " ")
		switch word {
		case "data":
			n, err := strconv.Atoi(rest)
			if err != nil || n < 0 || n > maxChunk {
				return 0, fmt.Errorf("control: bad data record %q", line)
			}
			if out == nil {
				out = io.Discard
			}
			if _, err := io.CopyN(out, br, int64(n)); err != nil {
				return 0, fmt.Errorf("control: copying the reply: %w", err)
			}
		case "warning":
			if warn != nil {
				warn(rest)
			}
		case "ok":
			n, err := strconv.Atoi(rest)
			if err != nil {
				return 0, fmt.Errorf("control: bad ok record %q", line)
			}
			return n, nil
		case "error":
			kind, msg, _ := strings.Cut(rest, " ")
			return 0, &Error{Kind: kind, Msg: msg}
		default:
			return 0, fmt.Errorf("control: unknown reply record %q", line)
		}
	}
}
