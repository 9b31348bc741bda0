package smtpclient

import (
	"bytes"
	"mime"
	"strings"
)

// downgrader re-encodes the 8bit and binary MIME parts of a message as
// quoted-printable, for a server that does not offer 8BITMIME (RFC 6152
// section 3; Postfix's smtp(8) does the same unless
// disable_mime_output_conversion = yes). It follows the MIME structure
// (multipart boundaries, message/rfc822 parts) line by line, so the message
// is never held in memory; only one entity's header is.
//
// What is converted is decided by the declared Content-Transfer-Encoding,
// as in Postfix: a part that says "8bit" or "binary" is re-encoded and its
// header changed to "quoted-printable"; 8-bit bytes in a part that declares
// nothing (or 7bit) are sent as they are, and so are 8-bit header bytes.
type downgrader struct {
	out lineSink
	// stack holds the boundaries of the enclosing multiparts, innermost
	// last.
	stack []string
	// inHeader: collecting an entity's header; hdr holds its lines.
	inHeader bool
	hdr      [][]byte
	hdrSize  int
	// qp: the current leaf body is being quoted-printable encoded.
	qp bool
	// nextIsMessage: the entity after this header is an embedded message
	// (message/rfc822), whose body starts with another header.
	converted bool
	buf       []byte
}

// maxHeaderHold bounds one entity's header; a larger one is passed on
// unconverted.
const maxHeaderHold = 1 << 20

func newDowngrader(out lineSink) *downgrader {
	return &downgrader{out: out, inHeader: true}
}

func (d *downgrader) line(l []byte) error {
	if d.inHeader {
		if len(l) == 0 {
			return d.endHeader(l)
		}
		if d.hdrSize+len(l) > maxHeaderHold {
			// Give up on this entity: pass it on as it is.
			if err := d.flushHeader(); err != nil {
				return err
			}
			d.inHeader = false
			return d.out.line(l)
		}
		d.hdr = append(d.hdr, append([]byte(nil), l...))
		d.hdrSize += len(l)
		return nil
	}
	if b, final, ok := d.boundary(l); ok {
		if d.qp {
			d.qp = false
		}
		// Leaving nested multiparts whose end was never written.
		d.stack = d.stack[:b+1]
		if final {
			d.stack = d.stack[:b]
			return d.out.line(l)
		}
		d.inHeader = true
		return d.out.line(l)
	}
	if d.qp {
		return d.qpLine(l)
	}
	return d.out.line(l)
}

// boundary reports whether l is a delimiter of an enclosing multipart
// (RFC 2046 5.1.1), which one (index in stack) and whether it is the final
// one.
func (d *downgrader) boundary(l []byte) (int, bool, bool) {
	if len(d.stack) == 0 || !bytes.HasPrefix(l, []byte("--")) {
		return 0, false, false
	}
	rest := bytes.TrimRight(l[2:], " \t")
	for i := len(d.stack) - 1; i >= 0; i-- {
		b := d.stack[i]
		if string(rest) == b {
			return i, false, true
		}
		if len(rest) == len(b)+2 && string(rest[:len(b)]) == b && string(rest[len(b):]) == "--" {
			return i, true, true
		}
	}
	return 0, false, false
}

// endHeader decides what the entity whose header just ended is, rewrites
// its Content-Transfer-Encoding when it is converted, and passes the
// header on.
func (d *downgrader) endHeader(blank []byte) error {
	ctype, cte := "", ""
	cteIndex := -1
	for i, h := range d.hdr {
		if len(h) > 0 && (h[0] == ' ' || h[0] == '\t') {
			continue
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		// The value may continue on the following lines.
		v := string(value)
		for j := i + 1; j < len(d.hdr) && len(d.hdr[j]) > 0 && (d.hdr[j][0] == ' ' || d.hdr[j][0] == '\t'); j++ {
			v += string(d.hdr[j])
		}
		switch strings.ToLower(strings.TrimSpace(string(name))) {
		case "content-type":
			ctype = v
		case "content-transfer-encoding":
			cte = strings.ToLower(strings.TrimSpace(v))
			cteIndex = i
		}
	}
	d.inHeader = false
	mt, params, err := mime.ParseMediaType(strings.TrimSpace(ctype))
	if err != nil {
		mt = ""
	}
	switch {
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "":
		d.stack = append(d.stack, params["boundary"])
	case mt == "message/rfc822" && (cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary"):
		// The body is a message: its header comes next.
		d.inHeader = true
	case cte == "8bit" || cte == "binary":
		// Drop the old header line and its continuations, then add ours.
		var kept [][]byte
		for i := 0; i < len(d.hdr); i++ {
			if i == cteIndex {
				for i+1 < len(d.hdr) && len(d.hdr[i+1]) > 0 && (d.hdr[i+1][0] == ' ' || d.hdr[i+1][0] == '\t') {
					i++
				}
				kept = append(kept, []byte("Content-Transfer-Encoding: quoted-printable"))
				continue
			}
			kept = append(kept, d.hdr[i])
		}
		d.hdr = kept
		d.qp = true
		d.converted = true
	}
	if err := d.flushHeader(); err != nil {
		return err
	}
	return d.out.line(blank)
}

func (d *downgrader) flushHeader() error {
	for _, h := range d.hdr {
		if err := d.out.line(h); err != nil {
			return err
		}
	}
	d.hdr, d.hdrSize = d.hdr[:0], 0
	return nil
}

// finish passes on a header that never ended (a message with no body).
func (d *downgrader) finish() error {
	if d.inHeader {
		return d.flushHeader()
	}
	return nil
}

const hexDigits = "0123456789ABCDEF"

// qpLine writes the quoted-printable encoding of one line (RFC 2045
// 6.7): "=", control and 8-bit bytes as =HH, white space at the end of the
// line too. Like Postfix's mime_state.c, it ends an output line with a soft
// break "=" as soon as it holds more than 72 characters (so lines stay
// within 76), checking before each input byte (mime_oracle in
// mda/smtp/oracle_test.go compares the result byte for byte).
func (d *downgrader) qpLine(l []byte) error {
	out := d.buf[:0]
	for i, ch := range l {
		if len(out) > 72 {
			if err := d.out.line(append(out, '=')); err != nil {
				return err
			}
			out = out[:0]
		}
		switch {
		case (ch == ' ' || ch == '\t') && i == len(l)-1:
			out = append(out, '=', hexDigits[ch>>4], hexDigits[ch&15])
		case ch == ' ' || ch == '\t' || ch >= '!' && ch <= '~' && ch != '=':
			out = append(out, ch)
		default:
			out = append(out, '=', hexDigits[ch>>4], hexDigits[ch&15])
		}
	}
	d.buf = out
	return d.out.line(out)
}
