package smtpserver

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/postkit-mail/postkit/internal/oracle"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// v2 builds a version 2 header: verCmd (0x21 PROXY, 0x20 LOCAL), famProto
// (0x11 TCP4, 0x21 TCP6, ...), the address block and TLVs.
func v2(verCmd, famProto byte, body ...[]byte) []byte {
	var payload []byte
	for _, b := range body {
		payload = append(payload, b...)
	}
	h := append([]byte{}, v2Signature...)
	h = append(h, verCmd, famProto, 0, 0)
	binary.BigEndian.PutUint16(h[14:], uint16(len(payload)))
	return append(h, payload...)
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// Fixtures written from HAProxy's proxy-protocol.txt (sections 2.1 and 2.2).
var proxyGood = []struct {
	name string
	in   []byte
	want ProxyHeader
}{
	{"v1 tcp4", []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
		ProxyHeader{Version: 1, Source: netip.MustParseAddrPort("192.168.0.1:56324"), Dest: netip.MustParseAddrPort("192.168.0.11:443")}},
	// The longest v1 line of the specification: 107 bytes.
	{"v1 tcp6 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		ProxyHeader{Version: 1, Source: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Dest: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
	{"v1 tcp6 short", []byte("PROXY TCP6 2001:db8::1 ::1 0 25\r\n"),
		ProxyHeader{Version: 1, Source: netip.MustParseAddrPort("[2001:db8::1]:0"), Dest: netip.MustParseAddrPort("[::1]:25")}},
	// Postfix 3.7 is lenient here (checked against it): a bare LF, runs
	// of spaces, fields after the ports.
	{"v1 bare LF", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
		ProxyHeader{Version: 1, Source: netip.MustParseAddrPort("1.2.3.4:1"), Dest: netip.MustParseAddrPort("5.6.7.8:2")}},
	{"v1 double space", []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"),
		ProxyHeader{Version: 1, Source: netip.MustParseAddrPort("1.2.3.4:1"), Dest: netip.MustParseAddrPort("5.6.7.8:2")}},
	{"v1 extra field", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
		ProxyHeader{Version: 1, Source: netip.MustParseAddrPort("1.2.3.4:1"), Dest: netip.MustParseAddrPort("5.6.7.8:2")}},
	{"v2 tcp4", v2(0x21, 0x11, []byte{203, 0, 113, 7}, []byte{192, 0, 2, 25}, be16(40000), be16(25)),
		ProxyHeader{Version: 2, Source: netip.MustParseAddrPort("203.0.113.7:40000"), Dest: netip.MustParseAddrPort("192.0.2.25:25")}},
	{"v2 tcp4 with TLVs", v2(0x21, 0x11, []byte{203, 0, 113, 7}, []byte{192, 0, 2, 25}, be16(40000), be16(25),
		[]byte{0x01, 0, 4, 'h', '2', '/', '1'}, []byte{0x04, 0, 0}),
		ProxyHeader{Version: 2, Source: netip.MustParseAddrPort("203.0.113.7:40000"), Dest: netip.MustParseAddrPort("192.0.2.25:25")}},
	{"v2 tcp6", v2(0x21, 0x21, netip.MustParseAddr("2001:db8::7").AsSlice(), netip.MustParseAddr("2001:db8::25").AsSlice(), be16(1), be16(587)),
		ProxyHeader{Version: 2, Source: netip.MustParseAddrPort("[2001:db8::7]:1"), Dest: netip.MustParseAddrPort("[2001:db8::25]:587")}},
	{"v2 local", v2(0x20, 0x00), ProxyHeader{Version: 2, Local: true}},
	// LOCAL with an address block: the receiver must ignore it (2.2).
	{"v2 local with addresses", v2(0x20, 0x11, make([]byte, 12)), ProxyHeader{Version: 2, Local: true}},
}

var proxyBad = []struct {
	name, in string
}{
	{"empty", ""},
	{"smtp instead", "EHLO client.example\r\n"},
	{"lower case", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"},
	// The specification wants UNKNOWN accepted; Postfix 3.7 refuses it,
	// and PROXY with UNSPEC or AF_UNIX addresses (checked against it).
	{"v1 unknown", "PROXY UNKNOWN\r\n"},
	{"v1 unknown with junk", "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"},
	{"v2 unspec", string(v2(0x21, 0x00, []byte("ignored")))},
	{"v2 unix", string(v2(0x21, 0x31, make([]byte, 216)))},
	{"truncated", "PROXY TCP4 1.2.3.4 5.6"},
	{"too long", "PROXY UNKNOWN " + strings.Repeat("x", 100) + "\r\n"},
	{"unknown protocol", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"},
	{"v6 address in TCP4", "PROXY TCP4 ::1 5.6.7.8 1 2\r\n"},
	{"v4 address in TCP6", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n"},
	{"port too big", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"},
	{"leading zero port", "PROXY TCP4 1.2.3.4 5.6.7.8 025 2\r\n"},
	{"signed port", "PROXY TCP4 1.2.3.4 5.6.7.8 +25 2\r\n"},
	{"missing port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"},
	{"zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"},
	{"v2 bad signature", "\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c"},
	{"v2 version 1", string(v2(0x11, 0x11, make([]byte, 12)))},
	{"v2 command 2", string(v2(0x22, 0x11, make([]byte, 12)))},
	{"v2 family 4", string(v2(0x21, 0x41, make([]byte, 12)))},
	{"v2 udp", string(v2(0x21, 0x12, make([]byte, 12)))},
	{"v2 short block", string(v2(0x21, 0x21, make([]byte, 12)))},
	{"v2 truncated", string(v2(0x21, 0x11, make([]byte, 12))[:20])},
	{"v2 length beyond data", string(v2(0x21, 0x11, make([]byte, 12), []byte{1, 0, 9}))[:28] + "\x00\x00"},
}

func decodeBytes(b []byte) (ProxyHeader, []byte, error) {
	br := bufio.NewReaderSize(bytes.NewReader(b), proxyBufSize)
	h, err := decodeProxy(br)
	if err != nil {
		return h, nil, err
	}
	rest, _ := io.ReadAll(br)
	return h, rest, nil
}

func TestProxyDecode(t *testing.T) {
	for _, tc := range proxyGood {
		t.Run(tc.name, func(t *testing.T) {
			// What follows the header must come out untouched.
			in := append(append([]byte{}, tc.in...), "EHLO x\r\n"...)
			h, rest, err := decodeBytes(in)
			if err != nil {
				t.Fatalf("decode %q: %v", tc.in, err)
			}
			if h != tc.want {
				t.Errorf("decode %q = %+v, want %+v", tc.in, h, tc.want)
			}
			if string(rest) != "EHLO x\r\n" {
				t.Errorf("bytes after the header = %q, want %q", rest, "EHLO x\r\n")
			}
		})
	}
	for _, tc := range proxyBad {
		t.Run(tc.name, func(t *testing.T) {
			h, _, err := decodeBytes([]byte(tc.in))
			if err == nil {
				t.Fatalf("decode %q = %+v, want an error", tc.in, h)
			}
			if !errors.Is(err, ErrProxyHeader) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("decode %q: error %v wraps neither ErrProxyHeader nor ErrUnexpectedEOF", tc.in, err)
			}
		})
	}
}

// encodeProxy writes h in its version's canonical form (for the fuzz
// round trip).
func encodeProxy(h ProxyHeader) []byte {
	if h.Version == 1 {
		proto := "TCP6"
		if h.Source.Addr().Is4() {
			proto = "TCP4"
		}
		return []byte("PROXY " + proto + " " + h.Source.Addr().String() + " " + h.Dest.Addr().String() + " " +
			itoa(h.Source.Port()) + " " + itoa(h.Dest.Port()) + "\r\n")
	}
	if h.Local {
		return v2(0x20, 0)
	}
	if h.Source.Addr().Is4() {
		return v2(0x21, 0x11, h.Source.Addr().AsSlice(), h.Dest.Addr().AsSlice(), be16(h.Source.Port()), be16(h.Dest.Port()))
	}
	return v2(0x21, 0x21, h.Source.Addr().AsSlice(), h.Dest.Addr().AsSlice(), be16(h.Source.Port()), be16(h.Dest.Port()))
}

func itoa(p uint16) string {
	return strconv.Itoa(int(p))
}

// FuzzProxy feeds both versions to the decoder: no panic, no read past
// the header, and a decoded header survives re-encoding.
func FuzzProxy(f *testing.F) {
	for _, tc := range proxyGood {
		f.Add(tc.in)
	}
	for _, tc := range proxyBad {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		h, rest, err := decodeBytes(in)
		if err != nil {
			return
		}
		if !bytes.HasSuffix(in, rest) {
			t.Fatalf("rest %q is not the tail of the input %q", rest, in)
		}
		h2, rest2, err := decodeBytes(encodeProxy(h))
		if err != nil || h2 != h || len(rest2) != 0 {
			t.Fatalf("round trip of %+v from %q: %+v, %q, %v", h, in, h2, rest2, err)
		}
	})
}

// TestProxyMatchesPostfix sends every fixture to a live Postfix smtpd
// with smtpd_upstream_proxy_protocol = haproxy and compares which headers
// it accepts (it greets) and which it drops, and the client it logs.
func TestProxyMatchesPostfix(t *testing.T) {
	postfix := oracle.Require(t, "postfix")
	// IPv6 on, so that TCP6 headers can be compared too.
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: "inet_protocols = all\n"})
	// The harness needs a plain smtpd to start; turn PROXY on afterwards.
	f, err := os.OpenFile(filepath.Join(p.ConfigDir, "main.cf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "smtpd_upstream_proxy_protocol = haproxy\nsmtpd_upstream_proxy_timeout = 1s\n")
	f.Close()
	if out, err := exec.Command(postfix, "-c", p.ConfigDir, "reload").CombinedOutput(); err != nil {
		t.Fatalf("postfix reload: %v\n%s", err, out)
	}
	// postkit's side: a Listener that greets like Postfix once the
	// header is read.
	ln, lnAddr := startListener(t, ListenerConfig{Hostname: "mx.oracle.test", ProxyProtocol: "haproxy", ProxyTimeout: time.Second})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "220 mx.oracle.test ESMTP Postfix\r\n")
			c.Close()
		}
	}()
	// send writes in and reports whether smtpd greeted.
	send := func(addr string, in []byte) (greeted bool, line string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(in)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ = bufio.NewReader(c).ReadString('\n')
		return strings.HasPrefix(line, "220 "), line
	}
	// Wait until the smtpd processes of the old configuration (which
	// greet without a header) are gone.
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			break
		}
		if i == 100 {
			t.Fatal("smtpd still greets without a PROXY header after reload")
		}
	}
	check := func(name string, in []byte) {
		h, _, err := decodeBytes(in)
		before := len(p.Log())
		greeted, line := send(p.Addr, in)
		if _, ours := send(lnAddr, in); ours != line {
			t.Errorf("%s %q: postkit's Listener answered %q, Postfix %q", name, in, ours, line)
		}
		if greeted != (err == nil) {
			t.Errorf("%s %q: Postfix greeted=%v (%q); postkit decode error %v", name, in, greeted, line, err)
			return
		}
		if !greeted {
			return
		}
		want := "127.0.0.1"
		if !h.Local {
			want = h.Source.Addr().String()
		}
		var log string
		for i := 0; i < 100; i++ {
			if log = p.Log()[before:]; strings.Contains(log, ": connect from unknown["+want+"]") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(log, ": connect from unknown["+want+"]") {
			t.Errorf("%s: postkit's client %s; Postfix logged:\n%s", name, want, log)
		}
	}
	for _, tc := range proxyGood {
		check(tc.name, tc.in)
	}
	for _, tc := range proxyBad {
		if tc.in == "" {
			continue
		}
		check(tc.name, []byte(tc.in))
	}
}
