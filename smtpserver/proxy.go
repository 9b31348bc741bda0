package smtpserver

// The PROXY protocol, versions 1 and 2, as HAProxy's proxy-protocol.txt
// specifies it: what Postfix's smtpd reads when
// smtpd_upstream_proxy_protocol = haproxy. Written here rather than taken
// from github.com/pires/go-proxyproto: the decoder is ~200 lines, needs no
// TLV support (Postfix ignores TLVs), and owning it keeps the limits and
// error texts ours.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ProxyHeader is what a PROXY protocol header said about a connection.
type ProxyHeader struct {
	// Version is 1 (text) or 2 (binary).
	Version int
	// Local is set when the header carries no addresses (v1 "UNKNOWN",
	// v2 LOCAL command, v2 UNSPEC or AF_UNIX family): the proxy's own
	// connection is the client, as the specification requires.
	Local bool
	// Source is the original client; Dest is the address the client
	// connected to. Both are invalid when Local is set.
	Source, Dest netip.AddrPort
}

// ErrProxyHeader is wrapped by every error about a malformed PROXY header.
var ErrProxyHeader = errors.New("malformed PROXY protocol header")

// v2Signature starts every version 2 header (proxy-protocol.txt 2.2).
var v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

const (
	// v1MaxLen is the longest v1 line, CRLF included (proxy-protocol.txt
	// 2.1: 107 bytes).
	v1MaxLen = 107
	// proxyBufSize holds a v1 line or the fixed part of a v2 header with
	// any address block; TLVs beyond it are skipped, not buffered.
	proxyBufSize = 512
)

// ReadProxyHeader reads a PROXY protocol header (v1 or v2) from the start
// of c within timeout (smtpd_upstream_proxy_timeout) and returns the
// header and a conn that yields the bytes the client sent after it. On a
// malformed header (the error wraps ErrProxyHeader), a timeout or a
// cancelled ctx it returns an error; Postfix logs such connections and
// answers "421 4.3.0 HOSTNAME Server local error" before closing them
// (Listener does that). Unlike Postfix 3.7, which parses whatever its
// first read returned, a header split across TCP segments is waited for
// (up to timeout).
func ReadProxyHeader(ctx context.Context, c net.Conn, timeout time.Duration) (net.Conn, ProxyHeader, error) {
	if timeout > 0 {
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return nil, ProxyHeader{}, fmt.Errorf("read PROXY header: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Unix(1, 0)) })
	br := bufio.NewReaderSize(c, proxyBufSize)
	h, err := decodeProxy(br)
	stopped := stop()
	if err == nil && !stopped {
		err = ctx.Err()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, ProxyHeader{}, fmt.Errorf("read PROXY header from %s: %w", c.RemoteAddr(), err)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return nil, ProxyHeader{}, fmt.Errorf("read PROXY header: %w", err)
	}
	if n := br.Buffered(); n > 0 {
		rest, _ := br.Peek(n)
		return &replayConn{Conn: c, buf: bytes.Clone(rest)}, h, nil
	}
	return c, h, nil
}

// replayConn returns buf before reading from Conn: the bytes read past
// the PROXY header.
type replayConn struct {
	net.Conn
	buf []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		if len(c.buf) == 0 {
			c.buf = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the underlying conn.
func (c *replayConn) NetConn() net.Conn { return c.Conn }

func proxyErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProxyHeader, fmt.Sprintf(format, args...))
}

// decodeProxy reads one header from br. It never reads past the header
// except into br's buffer.
func decodeProxy(br *bufio.Reader) (ProxyHeader, error) {
	first, err := br.Peek(1)
	if err != nil {
		return ProxyHeader{}, noEOF(err)
	}
	switch first[0] {
	case 'P':
		return decodeV1(br)
	case '\r':
		return decodeV2(br)
	}
	return ProxyHeader{}, proxyErr("no PROXY header (first byte %q)", first[0])
}

// noEOF turns an EOF inside a header into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// decodeV1 reads "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n"
// (proxy-protocol.txt 2.1).
func decodeV1(br *bufio.Reader) (ProxyHeader, error) {
	// Look for the LF within the first v1MaxLen bytes, waiting for no
	// more bytes than the client has sent: a client that sends the header
	// and then waits for the banner must not stall.
	var line []byte
	for {
		n := br.Buffered()
		b, _ := br.Peek(n)
		if i := bytes.IndexByte(b[:min(n, v1MaxLen)], '\n'); i >= 0 {
			line = b[:i+1]
			break
		}
		if n >= v1MaxLen {
			return ProxyHeader{}, proxyErr("v1 header longer than %d bytes", v1MaxLen)
		}
		if _, err := br.Peek(n + 1); err != nil {
			return ProxyHeader{}, noEOF(err)
		}
	}
	h, err := parseV1(string(line))
	if err != nil {
		return ProxyHeader{}, err
	}
	br.Discard(len(line))
	return h, nil
}

// parseV1 parses the line the way Postfix 3.7's smtpd does (checked
// against it): fields separated by runs of spaces or tabs, a bare LF
// accepted as the end, fields after the ports ignored, TCP4 and TCP6 only
// ("UNKNOWN" is refused: "bad or missing protocol type").
func parseV1(line string) (ProxyHeader, error) {
	h := ProxyHeader{Version: 1}
	f := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' })
	if len(f) == 0 || f[0] != "PROXY" {
		return h, proxyErr("unrecognized protocol header")
	}
	if len(f) < 2 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return h, proxyErr("bad or missing protocol type")
	}
	for len(f) < 6 {
		f = append(f, "")
	}
	v4 := f[1] == "TCP4"
	addr := func(s, what string) (netip.Addr, error) {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.Is4() != v4 {
			return a, proxyErr("bad or missing %s address %q", what, printableStr(s))
		}
		return a, nil
	}
	src, err := addr(f[2], "client")
	if err != nil {
		return h, err
	}
	dst, err := addr(f[3], "server")
	if err != nil {
		return h, err
	}
	sp, err := parsePort(f[4])
	if err != nil {
		return h, proxyErr("bad or missing client port %q", printableStr(f[4]))
	}
	dp, err := parsePort(f[5])
	if err != nil {
		return h, proxyErr("bad or missing server port %q", printableStr(f[5]))
	}
	h.Source = netip.AddrPortFrom(src, sp)
	h.Dest = netip.AddrPortFrom(dst, dp)
	return h, nil
}

// parsePort reads a decimal port 0..65535; the specification has no
// leading zeros, and a sign or spaces are not numbers.
func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err
}

// printableStr quotes at most 40 bytes of untrusted input for errors.
func printableStr(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)[1 : len(strconv.Quote(s))-1]
}

// decodeV2 reads a binary header (proxy-protocol.txt 2.2): the 12-byte
// signature, version/command, family/transport, a 16-bit length, then the
// address block and TLVs.
func decodeV2(br *bufio.Reader) (ProxyHeader, error) {
	h := ProxyHeader{Version: 2}
	hdr, err := br.Peek(16)
	if err != nil {
		// A short header that already differs from the signature is
		// not a PROXY header at all.
		if !bytes.HasPrefix(v2Signature, hdr[:min(len(hdr), 12)]) {
			return h, proxyErr("no PROXY header")
		}
		return h, noEOF(err)
	}
	if !bytes.Equal(hdr[:12], v2Signature) {
		return h, proxyErr("no PROXY header (bad v2 signature)")
	}
	if hdr[12]>>4 != 2 {
		return h, proxyErr("v2 version %d", hdr[12]>>4)
	}
	cmd := hdr[12] & 0xf
	if cmd > 1 {
		return h, proxyErr("v2 command %d", cmd)
	}
	fam, proto := hdr[13]>>4, hdr[13]&0xf
	length := int(binary.BigEndian.Uint16(hdr[14:16]))
	var need int
	switch fam {
	case 0: // AF_UNSPEC
	case 1: // AF_INET
		need = 12
	case 2: // AF_INET6
		need = 36
	case 3: // AF_UNIX
		need = 216
	default:
		return h, proxyErr("v2 address family %d", fam)
	}
	if proto > 2 {
		return h, proxyErr("v2 transport protocol %d", proto)
	}
	if length < need {
		return h, proxyErr("v2 length %d too short for address family %d", length, fam)
	}
	if cmd == 1 && (fam == 1 || fam == 2) && proto != 1 {
		// Postfix accepts only TCP (SOCK_STREAM) for a proxied SMTP
		// client; UDP or UNSPEC transport makes no sense for it.
		return h, proxyErr("v2 transport protocol %d is not TCP", proto)
	}
	br.Discard(16)
	var ab [36]byte
	read := 0
	if need <= len(ab) {
		if _, err := io.ReadFull(br, ab[:need]); err != nil {
			return h, noEOF(err)
		}
		read = need
	}
	// The rest (AF_UNIX paths, TLVs) is skipped without buffering it.
	if skip := length - read; skip > 0 {
		if _, err := br.Discard(skip); err != nil {
			return h, noEOF(err)
		}
	}
	if cmd == 0 {
		// LOCAL: a health check by the proxy itself; the real
		// connection is the client (2.2).
		h.Local = true
		return h, nil
	}
	if fam == 0 || fam == 3 {
		// Postfix 3.7 refuses PROXY with UNSPEC or AF_UNIX addresses
		// (checked against it), although the specification would
		// have the receiver fall back to the real connection.
		return h, proxyErr("unsupported network protocol")
	}
	if fam == 1 {
		src := netip.AddrFrom4([4]byte(ab[0:4]))
		dst := netip.AddrFrom4([4]byte(ab[4:8]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(ab[8:10]))
		h.Dest = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(ab[10:12]))
	} else {
		src := netip.AddrFrom16([16]byte(ab[0:16]))
		dst := netip.AddrFrom16([16]byte(ab[16:32]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(ab[32:34]))
		h.Dest = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(ab[34:36]))
	}
	return h, nil
}
