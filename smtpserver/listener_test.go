package smtpserver

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// acceptOne accepts a connection in the background.
func acceptOne(ln net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

func mustDial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads what the server sends until it closes.
func readAll(t testing.TB, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestListenerConnectionLimit(t *testing.T) {
	logs := &logLines{}
	ln, addr := startListener(t, ListenerConfig{Limits: Limits{Hostname: "mx.example.com", ConnectionCountLimit: 1}, Logger: slog.New(logs)})
	ch := acceptOne(ln)
	mustDial(t, addr)
	first := <-ch
	pc, ok := first.(PeerConn)
	if !ok {
		t.Fatalf("Accept returned %T, not a PeerConn", first)
	}
	if pc.Peer().Addr() != netip.MustParseAddr("127.0.0.1") || pc.Local().String() != addr {
		t.Errorf("Peer %v Local %v, want 127.0.0.1:* and %s", pc.Peer(), pc.Local(), addr)
	}
	ch = acceptOne(ln)
	second := mustDial(t, addr)
	if got, want := readAll(t, second), "421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1\r\n"; got != want {
		t.Errorf("second connection got %q, want %q", got, want)
	}
	// Accept goes on: once the first connection is closed a new one is
	// admitted.
	first.Close()
	mustDial(t, addr)
	select {
	case c := <-ch:
		if c == nil {
			t.Fatal("Accept failed")
		}
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted after the first closed")
	}
	found := false
	for _, l := range logs.take() {
		found = found || strings.HasPrefix(l, "warning: Connection concurrency limit exceeded: 2 from unknown[127.0.0.1] for service smtp")
	}
	if !found {
		t.Error("no concurrency warning logged")
	}
}

func TestListenerExceptions(t *testing.T) {
	ln, addr := startListener(t, ListenerConfig{Limits: Limits{ConnectionCountLimit: 1, Exceptions: []string{"127.0.0.0/8"}}})
	for i := 0; i < 3; i++ {
		ch := acceptOne(ln)
		mustDial(t, addr)
		c := <-ch
		if c == nil {
			t.Fatal("Accept failed")
		}
		defer c.Close()
		if c.(PeerConn).Limits() == nil {
			t.Fatal("no ClientLimits")
		}
		if r, ok := c.(PeerConn).Limits().Message(); !ok {
			t.Errorf("exempt client limited: %s", r)
		}
	}
}

func TestListenerProxy(t *testing.T) {
	logs := &logLines{}
	ln, addr := startListener(t, ListenerConfig{Hostname: "mx.example.com", ProxyProtocol: "haproxy", ProxyTimeout: 300 * time.Millisecond,
		Limits: Limits{ConnectionCountLimit: 1}, Logger: slog.New(logs)})
	// A client that sends nothing must not hold up the others.
	stalled := mustDial(t, addr)

	conns := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	next := func() PeerConn {
		t.Helper()
		select {
		case c := <-conns:
			if c == nil {
				t.Fatal("Accept failed")
			}
			t.Cleanup(func() { c.Close() })
			return c.(PeerConn)
		case <-time.After(10 * time.Second):
			t.Fatal("nothing accepted")
		}
		return nil
	}
	for _, tc := range []struct {
		name   string
		header []byte
		peer   string
		local  string
	}{
		{"v1", []byte("PROXY TCP4 203.0.113.7 192.0.2.25 40000 25\r\n"), "203.0.113.7:40000", "192.0.2.25:25"},
		{"v2", v2(0x21, 0x21, netip.MustParseAddr("2001:db8::7").AsSlice(), netip.MustParseAddr("2001:db8::25").AsSlice(), be16(1), be16(587)),
			"[2001:db8::7]:1", "[2001:db8::25]:587"},
		{"v2 local", v2(0x20, 0), "127.0.0.1", addr},
	} {
		c := mustDial(t, addr)
		// Header and first command in one write, as a pipelining client
		// behind a proxy would send them.
		c.Write(append(append([]byte{}, tc.header...), "EHLO client.example\r\n"...))
		pc := next()
		peer := pc.Peer().String()
		if tc.name == "v2 local" {
			peer = pc.Peer().Addr().String()
		}
		if peer != tc.peer || pc.Local().String() != tc.local {
			t.Errorf("%s: Peer %v Local %v, want %s %s", tc.name, pc.Peer(), pc.Local(), tc.peer, tc.local)
		}
		if tc.name != "v2 local" && pc.RemoteAddr().String() != tc.peer {
			t.Errorf("%s: RemoteAddr %v, want %s", tc.name, pc.RemoteAddr(), tc.peer)
		}
		line, err := bufio.NewReader(pc).ReadString('\n')
		if err != nil || line != "EHLO client.example\r\n" {
			t.Errorf("%s: first line after the header = %q, %v", tc.name, line, err)
		}
	}
	// A client that sends the header alone and waits for the banner is
	// admitted at once (the decoder must not wait for more bytes).
	alone := mustDial(t, addr)
	alone.Write([]byte("PROXY TCP4 198.51.100.1 192.0.2.25 1 25\r\n"))
	pc := next()
	fmt.Fprintf(pc, "220 mx.example.com ESMTP\r\n")
	if line, err := bufio.NewReader(alone).ReadString('\n'); err != nil || line != "220 mx.example.com ESMTP\r\n" {
		t.Errorf("header alone: banner %q, %v", line, err)
	}
	pc.Close()
	// Limits apply to the proxied client: a second connection from
	// 203.0.113.7 is refused while the first is open.
	c := mustDial(t, addr)
	c.Write([]byte("PROXY TCP4 203.0.113.7 192.0.2.25 40001 25\r\n"))
	if got, want := readAll(t, c), "421 4.7.0 mx.example.com Error: too many connections from 203.0.113.7\r\n"; got != want {
		t.Errorf("second proxied connection got %q, want %q", got, want)
	}
	// A malformed header gets Postfix's 421 and the connection is closed.
	const localError = "421 4.3.0 mx.example.com Server local error\r\n"
	c = mustDial(t, addr)
	c.Write([]byte("EHLO no.proxy.example\r\n"))
	if got := readAll(t, c); got != localError {
		t.Errorf("malformed header: server sent %q, want %q", got, localError)
	}
	// So is the stalled client, after the timeout.
	if got := readAll(t, stalled); got != localError {
		t.Errorf("stalled client got %q, want %q", got, localError)
	}
	var haproxy int
	for _, l := range logs.take() {
		if strings.HasPrefix(l, "warning: haproxy read: ") {
			haproxy++
		}
	}
	if haproxy != 2 {
		t.Errorf("%d haproxy warnings, want 2 (malformed and timeout)", haproxy)
	}
	ln.Close()
	if _, ok := <-conns; ok {
		t.Error("Accept returned a conn after Close")
	}
}

// flakyListener returns errs before delegating to a real listener.
type flakyListener struct {
	net.Listener
	errs []error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.Listener.Accept()
}

func TestListenerAcceptBackoff(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	fl := &flakyListener{Listener: inner, errs: []error{emfile, emfile, &net.OpError{Op: "accept", Err: syscall.ECONNABORTED}}}
	ln, err := NewListener(fl, ListenerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ch := acceptOne(ln)
	mustDial(t, inner.Addr().String())
	if c := <-ch; c == nil {
		t.Fatal("Accept gave up on temporary errors")
	} else {
		c.Close()
	}
	// A permanent error ends Accept.
	fl.errs = []error{errors.New("listener broken")}
	if _, err := ln.Accept(); err == nil || err.Error() != "listener broken" {
		t.Errorf("permanent error: Accept = %v", err)
	}
}

// BenchmarkAccept compares a bare listener with a Listener that checks
// the connection limits, in the same run: each op is dial, accept, close.
func BenchmarkAccept(b *testing.B) {
	run := func(b *testing.B, wrap func(net.Listener) net.Listener) {
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ln := wrap(inner)
		defer ln.Close()
		addr := inner.Addr().String()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		for b.Loop() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			c.Read(make([]byte, 1)) // wait for the server's close
			c.Close()
		}
		ln.Close()
		<-done
	}
	b.Run("bare", func(b *testing.B) { run(b, func(l net.Listener) net.Listener { return l }) })
	b.Run("listener", func(b *testing.B) {
		run(b, func(l net.Listener) net.Listener {
			ln, err := NewListener(l, ListenerConfig{Limits: Limits{ConnectionCountLimit: 50, ConnectionRateLimit: 1 << 30,
				Exceptions: []string{"192.168.0.0/16"}}})
			if err != nil {
				b.Fatal(err)
			}
			return ln
		})
	})
	b.Run("listener-proxy", func(b *testing.B) {
		// With PROXY decoding on, the header is read in a goroutine per
		// connection; a client that sends "PROXY UNKNOWN" is admitted.
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ln, err := NewListener(inner, ListenerConfig{ProxyProtocol: "haproxy", Limits: Limits{ConnectionCountLimit: 50}})
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		hdr := []byte("PROXY UNKNOWN\r\n")
		for b.Loop() {
			c, err := net.Dial("tcp", inner.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			c.Write(hdr)
			c.Read(make([]byte, 1))
			c.Close()
		}
	})
}

// A Listener below TLS for the submissions port: limits and PROXY support
// first, then implicit TLS on top (never the other way round).
func ExampleNewListener() {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	ln, err := NewListener(tcp, ListenerConfig{
		Limits:  Limits{Hostname: "mx.example.com", ConnectionCountLimit: 50, ConnectionRateLimit: 100, TimeUnit: time.Minute},
		Service: "submissions",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	cert, err := SelfSigned("mx.example.com")
	if err != nil {
		fmt.Println(err)
		return
	}
	tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	defer tl.Close()

	go func() {
		c, err := tls.Dial("tcp", tcp.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Write([]byte("EHLO client.example\r\n"))
			c.Close()
		}
	}()
	c, err := tl.Accept()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	line, _ := bufio.NewReader(c).ReadString('\n')
	// Below the TLS layer is the Listener's PeerConn.
	pc := c.(*tls.Conn).NetConn().(PeerConn)
	fmt.Printf("%q from %s\n", line, pc.Peer().Addr())
	// Output: "EHLO client.example\r\n" from 127.0.0.1
}

func TestListenerConfigFrom(t *testing.T) {
	c := mainCF(t, "myhostname = mx.example.com\nsmtpd_upstream_proxy_protocol = haproxy\nsmtpd_client_connection_rate_limit = 7\n")
	cfg, err := ListenerConfigFrom(c)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hostname != "mx.example.com" || cfg.ProxyProtocol != "haproxy" || cfg.ProxyTimeout != 5*time.Second ||
		cfg.Limits.ConnectionRateLimit != 7 || cfg.Limits.ConnectionCountLimit != 50 || cfg.Service != "smtp" {
		t.Errorf("ListenerConfigFrom = %+v", cfg)
	}
	c = mainCF(t, "smtpd_upstream_proxy_timeout = soon\n")
	if _, err := ListenerConfigFrom(c); err == nil || !strings.Contains(err.Error(), "smtpd_upstream_proxy_timeout") {
		t.Errorf("bad timeout: %v", err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	if _, err := NewListener(inner, ListenerConfig{ProxyProtocol: "nginx"}); err == nil || !strings.Contains(err.Error(), "smtpd_upstream_proxy_protocol") {
		t.Errorf("bad proxy protocol: %v", err)
	}
}
