package mda

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"

	"github.com/postkit-mail/postkit/address"
)

// DeliveryHeaders returns the trace headers that Postfix's local(8) and
// virtual(8) put in front of a message they store (mail_copy(3) with the
// MAIL_COPY_RETURN_PATH, MAIL_COPY_ORIG_RCPT and MAIL_COPY_DELIVERED flags),
// in Postfix's order and with LF line ends:
//
//	Return-Path: <sender>
//	X-Original-To: original-recipient
//	Delivered-To: recipient
//
// Return-Path is always written; a null sender gives "Return-Path: <>".
// X-Original-To is left out when originalTo is empty (enable_original_recipient
// = no, or no original recipient was recorded), Delivered-To when deliveredTo
// is empty (the delivery type is not in prepend_delivered_header). Addresses
// are given in internal form and written in external form (the local part is
// quoted where RFC 5322 needs it, as quote_822_local does) and keep their
// case: Postfix 3.7 writes "Delivered-To: Root@localhost" for a recipient
// given as Root@localhost (checked against a private Postfix by
// mda/local's oracle test).
func DeliveryHeaders(returnPath, originalTo, deliveredTo string) []byte {
	var b bytes.Buffer
	b.WriteString("Return-Path: <")
	if returnPath != "" {
		b.WriteString(address.Quote(returnPath))
	}
	b.WriteString(">\n")
	if originalTo != "" {
		b.WriteString("X-Original-To: ")
		b.WriteString(address.Quote(originalTo))
		b.WriteByte('\n')
	}
	if deliveredTo != "" {
		b.WriteString("Delivered-To: ")
		b.WriteString(address.Quote(deliveredTo))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// maxHeaderScan bounds how much of the header section HasDeliveredTo reads;
// cleanup limits the header section to header_size_limit (102400) anyway, so
// this only guards against content that never ends its headers.
const maxHeaderScan = 4 << 20

// HasDeliveredTo reports whether the header section of content (CRLF or LF
// lines, headers then an empty line then the body) has a Delivered-To: header
// whose value equals addr, compared case-insensitively after trimming
// whitespace. This is local(8)'s and virtual(8)'s mail forwarding loop check
// (Postfix's delivered_hdr(3)): the caller bounces with 5.4.6 "mail
// forwarding loop for ADDR" when it is true.
//
// addr is in internal form; a header that carries the external (quoted) form
// of the same address matches too. Only the first line of a folded header
// is compared, as Postfix does. Reading stops at the end of the header
// section, so the body is never read.
func HasDeliveredTo(content io.Reader, addr string) (bool, error) {
	want := strings.ToLower(strings.TrimSpace(addr))
	wantQuoted := strings.ToLower(address.Quote(strings.TrimSpace(addr)))
	found := false
	err := scanDeliveredTo(content, func(v string) bool {
		found = v == want || v == wantQuoted
		return !found
	})
	return found, err
}

// DeliveredTo returns the values of the Delivered-To: headers in the header
// section of content, trimmed and folded to lower case, in order. An agent
// that checks many recipients of one message reads them once with this and
// compares each recipient (and its quoted form) against the set, as
// Postfix's delivered_hdr(3) does.
func DeliveredTo(content io.Reader) ([]string, error) {
	var vs []string
	err := scanDeliveredTo(content, func(v string) bool {
		vs = append(vs, v)
		return true
	})
	return vs, err
}

// scanDeliveredTo calls fn with each Delivered-To value of the header
// section until fn returns false.
func scanDeliveredTo(content io.Reader, fn func(v string) bool) error {
	br := bufio.NewReaderSize(content, 4096)
	var read int
	for {
		line, err := br.ReadSlice('\n')
		read += len(line)
		if errors.Is(err, bufio.ErrBufferFull) {
			// A header line longer than the buffer cannot be a
			// Delivered-To we compare (addresses are short); skip it.
			for errors.Is(err, bufio.ErrBufferFull) {
				if read > maxHeaderScan {
					return nil // a line that never ends: stop here too
				}
				var more []byte
				more, err = br.ReadSlice('\n')
				read += len(more)
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		if err != nil && err != io.EOF {
			return err
		}
		l := bytes.TrimRight(line, "\r\n")
		if len(l) == 0 {
			return nil // end of headers
		}
		if l[0] != ' ' && l[0] != '\t' {
			if !isHeaderLine(l) {
				return nil // not a header: the body started
			}
			if name, value, ok := bytes.Cut(l, []byte{':'}); ok &&
				strings.EqualFold(string(bytes.TrimRight(name, " \t")), "Delivered-To") {
				if !fn(strings.ToLower(string(bytes.TrimSpace(value)))) {
					return nil
				}
			}
		}
		if err == io.EOF || read > maxHeaderScan {
			return nil
		}
	}
}

// isHeaderLine reports whether l starts like an RFC 5322 header field: a
// name of printable characters other than ':' and space, then optional
// whitespace and ':' (Postfix's is_header()).
func isHeaderLine(l []byte) bool {
	i := 0
	for i < len(l) && l[i] > ' ' && l[i] < 127 && l[i] != ':' {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(l) && (l[i] == ' ' || l[i] == '\t') {
		i++
	}
	return i < len(l) && l[i] == ':'
}

// NewLFReader returns a reader that yields r's bytes with every CR LF pair
// turned into LF, the form mailbox files and command input use. A CR that is
// not followed by LF is passed through unchanged.
func NewLFReader(r io.Reader) io.Reader {
	return &lfReader{r: r}
}

type lfReader struct {
	r       io.Reader
	buf     []byte
	out     []byte // storage for pending
	pending []byte // converted bytes not yet returned
	heldCR  bool   // the previous chunk ended in CR
	err     error
}

func (l *lfReader) Read(p []byte) (int, error) {
	for len(l.pending) == 0 {
		if l.err != nil {
			if l.heldCR {
				l.heldCR = false
				l.pending = []byte{'\r'}
				break
			}
			return 0, l.err
		}
		if l.buf == nil {
			l.buf = make([]byte, 32*1024)
		}
		n, err := l.r.Read(l.buf)
		l.err = err
		l.convert(l.buf[:n])
	}
	n := copy(p, l.pending)
	l.pending = l.pending[n:]
	return n, nil
}

// convert appends chunk to pending with CR LF turned into LF, holding a
// trailing CR back until the next chunk shows what follows it.
func (l *lfReader) convert(chunk []byte) {
	if cap(l.out) < len(chunk)+1 {
		l.out = make([]byte, 0, len(chunk)+1)
	}
	out := l.out[:0]
	if l.heldCR {
		l.heldCR = false
		if len(chunk) == 0 || chunk[0] != '\n' {
			if len(chunk) == 0 {
				l.heldCR = true
				l.pending = out
				return
			}
			out = append(out, '\r')
		}
	}
	for {
		i := bytes.IndexByte(chunk, '\r')
		if i < 0 {
			out = append(out, chunk...)
			break
		}
		out = append(out, chunk[:i]...)
		chunk = chunk[i+1:]
		if len(chunk) == 0 {
			l.heldCR = true
			break
		}
		if chunk[0] != '\n' {
			out = append(out, '\r')
		}
	}
	l.pending = out
}
