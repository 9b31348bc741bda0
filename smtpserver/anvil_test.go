package smtpserver

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("2001:db8::2")
)

func mustAnvil(t testing.TB, l Limits, clk *fakeClock) *anvil {
	t.Helper()
	if l.Hostname == "" {
		l.Hostname = "mx.example.com"
	}
	var now func() time.Time
	if clk != nil {
		now = clk.now
	}
	a, err := newAnvil(l, now)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAnvilConnectionCount(t *testing.T) {
	clk := newClock()
	a := mustAnvil(t, Limits{ConnectionCountLimit: 2}, clk)
	r1, _, ok1 := a.connect(ip1)
	r2, _, ok2 := a.connect(ip1)
	if !ok1 || !ok2 {
		t.Fatal("the first two connections were refused with limit 2")
	}
	r3, reply, ok := a.connect(ip1)
	if ok {
		t.Fatal("a third simultaneous connection was allowed with limit 2")
	}
	if want := "421 4.7.0 mx.example.com Error: too many connections from 192.0.2.1"; reply != want {
		t.Errorf("reply = %q, want %q", reply, want)
	}
	// Another client is not affected.
	r4, _, ok := a.connect(ip2)
	if !ok {
		t.Error("another client was refused")
	}
	r3()
	r1()
	r1() // a second release must not free a second slot
	if _, _, ok := a.connect(ip1); !ok {
		t.Error("refused after two connections closed")
	}
	if _, reply, ok := a.connect(ip1); ok {
		t.Error("allowed a third connection after a double release")
	} else if !strings.HasSuffix(reply, "from 192.0.2.1") {
		t.Errorf("reply = %q", reply)
	}
	r2()
	r4()
}

func TestAnvilConnectionRate(t *testing.T) {
	clk := newClock()
	a := mustAnvil(t, Limits{ConnectionRateLimit: 3, TimeUnit: time.Minute}, clk)
	for i := 0; i < 3; i++ {
		rel, _, ok := a.connect(ip2)
		if !ok {
			t.Fatalf("connection %d refused with rate limit 3", i+1)
		}
		rel()
		clk.add(10 * time.Second)
	}
	rel, reply, warn, ok := a.connectWarn(ip2)
	rel()
	if ok {
		t.Fatal("a fourth connection within the time unit was allowed")
	}
	if want := "421 4.7.0 mx.example.com Error: too many connections from 2001:db8::2"; reply != want {
		t.Errorf("reply = %q, want %q", reply, want)
	}
	if want := "Connection rate limit exceeded: 4"; warn != want {
		t.Errorf("warning = %q, want %q", warn, want)
	}
	// Refused attempts count too: the client stays refused while it
	// keeps trying within the window.
	clk.add(25 * time.Second)
	if rel, _, ok := a.connect(ip2); ok {
		t.Error("allowed while still within the window that began 55s ago")
	} else {
		rel()
	}
	// After the window the rates start again.
	clk.add(10 * time.Second)
	if rel, _, ok := a.connect(ip2); !ok {
		t.Error("refused after the time unit passed")
	} else {
		rel()
	}
}

func TestAnvilEvents(t *testing.T) {
	clk := newClock()
	a := mustAnvil(t, Limits{MessageRateLimit: 1, RecipientRateLimit: 2, AuthRateLimit: 1, NewTLSSessionRateLimit: 1}, clk)
	type check func(netip.Addr) (string, bool)
	for _, tc := range []struct {
		name  string
		f     check
		allow int
		want  string
	}{
		{"message", a.message, 1, "450 4.7.1 Error: too much mail from 192.0.2.1"},
		{"recipient", a.recipient, 2, "450 4.7.1 Error: too many recipients from 192.0.2.1"},
		{"auth", a.auth, 1, "450 4.7.1 Error: too many AUTH commands from 192.0.2.1"},
		{"tls", a.newTLSSession, 1, "421 4.7.0 mx.example.com Error: too many new TLS sessions from unknown[192.0.2.1]"},
	} {
		for i := 0; i < tc.allow; i++ {
			if r, ok := tc.f(ip1); !ok {
				t.Errorf("%s %d refused: %s", tc.name, i+1, r)
			}
		}
		r, ok := tc.f(ip1)
		if ok || r != tc.want {
			t.Errorf("%s over the limit = %q, %v; want %q, false", tc.name, r, ok, tc.want)
		}
		// The other client is unaffected.
		if r, ok := tc.f(ip2); !ok {
			t.Errorf("%s for another client refused: %s", tc.name, r)
		}
	}
	clk.add(61 * time.Second)
	if _, ok := a.message(ip1); !ok {
		t.Error("message refused after the time unit")
	}
	// An IPv4-mapped address is the same client as its IPv4 form.
	if r, ok := a.message(netip.MustParseAddr("::ffff:192.0.2.1")); ok || !strings.HasSuffix(r, " 192.0.2.1") {
		t.Errorf("mapped address: %q, %v", r, ok)
	}
	// Off limits count nothing.
	b := mustAnvil(t, Limits{ConnectionCountLimit: 1}, clk)
	for i := 0; i < 5; i++ {
		if _, ok := b.message(ip1); !ok {
			t.Fatal("message refused with the limit off")
		}
	}
}

func TestAnvilExpires(t *testing.T) {
	clk := newClock()
	a := mustAnvil(t, Limits{ConnectionRateLimit: 100, MessageRateLimit: 100}, clk)
	var open []func()
	for i := 0; i < 1000; i++ {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		rel, _, _ := a.connect(ip)
		a.message(ip)
		if i < 10 {
			open = append(open, rel)
		} else {
			rel()
		}
	}
	if n := a.size(); n != 1000 {
		t.Fatalf("size = %d, want 1000", n)
	}
	clk.add(2 * time.Minute)
	// Touch every shard once, so each sweeps.
	touched := map[*anvilShard]bool{}
	for i := 0; len(touched) < anvilShards; i++ {
		ip := netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})
		if s := a.shard(ip); !touched[s] {
			touched[s] = true
			rel, _, _ := a.connect(ip)
			rel()
		}
	}
	if n := a.size(); n > 10+anvilShards {
		t.Errorf("after the time unit %d entries remain; want the 10 open clients (plus at most one probe per shard)", n)
	}
	for _, rel := range open {
		rel()
	}
}

func TestAnvilExceptions(t *testing.T) {
	a := mustAnvil(t, Limits{ConnectionCountLimit: 1, Exceptions: []string{"!192.0.2.1", "192.0.2.0/24", "[2001:db8::2]"},
		XCLIENTHosts: []string{"198.51.100.0/24"}}, nil)
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"192.0.2.1", false}, {"192.0.2.7", true}, {"2001:db8::2", true}, {"2001:db8::3", false},
		{"198.51.100.9", true}, {"::ffff:192.0.2.7", true},
	} {
		if got := a.exempt(context.Background(), nil, "unknown", netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("exempt(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
	if _, err := newAnvil(Limits{Exceptions: []string{"nosuchtype:/x"}}, nil); err == nil || !strings.Contains(err.Error(), "smtpd_client_event_limit_exceptions") {
		t.Errorf("bad exception list: err = %v, want one naming the parameter", err)
	}
}

func TestAnvilConcurrent(t *testing.T) {
	a := mustAnvil(t, Limits{ConnectionCountLimit: 1000000, MessageRateLimit: 1 << 30}, nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				ip := netip.AddrFrom4([4]byte{10, 1, byte(g), byte(i % 7)})
				rel, _, _ := a.connect(ip)
				a.message(ip)
				rel()
			}
		}()
	}
	wg.Wait()
	// Every slot was given back: one more connection per client is
	// count 1.
	a.lim.ConnectionCountLimit = 1
	for g := 0; g < 8; g++ {
		if _, r, ok := a.connect(netip.AddrFrom4([4]byte{10, 1, byte(g), 0})); !ok {
			t.Fatalf("slot leaked: %s", r)
		}
	}
}

func TestLimitsFrom(t *testing.T) {
	c := config.Default()
	l, err := LimitsFrom(c)
	if err != nil {
		t.Fatal(err)
	}
	if l.ConnectionCountLimit != 50 || l.ConnectionRateLimit != 0 || l.TimeUnit != time.Minute {
		t.Errorf("defaults = %+v", l)
	}
	if got := strings.Join(l.Exceptions, " "); got != strings.Join(c.List("mynetworks"), " ") {
		t.Errorf("exceptions = %q, want $mynetworks %q", got, c.List("mynetworks"))
	}
	c.Set("smtpd_client_message_rate_limit", "ten")
	if _, err := LimitsFrom(c); err == nil || !strings.Contains(err.Error(), "smtpd_client_message_rate_limit") {
		t.Errorf("bad value: err = %v, want one naming the parameter", err)
	}
	c = config.Default()
	c.Set("anvil_rate_time_unit", "2h")
	c.Set("smtpd_client_event_limit_exceptions", "10.0.0.0/8, !10.1.0.0/16")
	if l, err := LimitsFrom(c); err != nil || l.TimeUnit != 2*time.Hour || strings.Join(l.Exceptions, " ") != "10.0.0.0/8 !10.1.0.0/16" {
		t.Errorf("LimitsFrom = %+v, %v", l, err)
	}
}

// logLines is a slog handler that keeps the messages, as Postfix's log
// has them ("warning: " for level Warn).
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (h *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (h *logLines) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	msg := r.Message
	if r.Level == slog.LevelWarn {
		msg = "warning: " + msg
	}
	h.lines = append(h.lines, msg)
	return nil
}
func (h *logLines) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logLines) WithGroup(string) slog.Handler      { return h }
func (h *logLines) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.lines
	h.lines = nil
	return l
}

// TestAnvilMatchesPostfix runs the same connections and commands against
// a live Postfix smtpd and against a Listener with the same limits, and
// compares the replies and the warnings.
func TestAnvilMatchesPostfix(t *testing.T) {
	const mainCF = `smtpd_client_event_limit_exceptions =
smtpd_authorized_xclient_hosts =
smtpd_client_connection_count_limit = 1
smtpd_client_message_rate_limit = 1
smtpd_client_recipient_rate_limit = 2
`
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: mainCF})
	cfg, err := config.Parse("main.cf", strings.NewReader(mainCF+"myhostname = mx.oracle.test\n"))
	if err != nil {
		t.Fatal(err)
	}
	lim, err := LimitsFrom(cfg)
	if err != nil {
		t.Fatal(err)
	}
	service := "127.0.0.1:" + fmt.Sprint(p.Port) // Postfix names the service by its master.cf name
	logs := &logLines{}
	ln, addr := startListener(t, ListenerConfig{Limits: lim, Service: service, Logger: slog.New(logs)})
	accepted := make(chan PeerConn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			pc := c.(PeerConn)
			fmt.Fprintf(c, "220 mx.oracle.test ESMTP Postfix\r\n")
			accepted <- pc
		}
	}()
	dial := func() (net.Conn, string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		return c, strings.TrimRight(line, "\r\n")
	}

	// Count limit: the second simultaneous connection.
	s1 := p.Session(t)
	s2 := p.Session(t)
	want := s2.Banner()
	c1, _ := dial()
	pc1 := <-accepted
	c2, got := dial()
	if got != want.String() {
		t.Errorf("second connection: postkit %q, Postfix %q", got, want.String())
	}
	// The refusal is logged after the 421 is on its way: wait for the
	// "disconnect" line.
	var gotLog []string
	for i := 0; i < 200 && len(gotLog) < 3; i++ {
		gotLog = append(gotLog, logs.take()...)
		time.Sleep(5 * time.Millisecond)
	}
	if g, w := strings.Join(gotLog, "\n"), strings.Join(want.Log, "\n"); g != w {
		t.Errorf("log of a refused connection:\npostkit:\n%s\nPostfix:\n%s", g, w)
	}
	c2.Close()

	// Message and recipient rates within one session.
	s1.Cmd("EHLO client.example")
	lim1 := pc1.Limits()
	steps := []struct {
		cmd   string
		check func() (string, bool)
	}{
		{"MAIL FROM:<a@example.com>", lim1.Message},
		{"RCPT TO:<b@example.com>", lim1.Recipient},
		{"RCPT TO:<c@example.com>", lim1.Recipient},
		{"RCPT TO:<d@example.com>", lim1.Recipient},
		{"RSET", nil},
		{"MAIL FROM:<a@example.com>", lim1.Message},
	}
	for _, st := range steps {
		r := s1.Cmd(st.cmd)
		if st.check == nil {
			continue
		}
		reply, ok := st.check()
		if ok != (r.Code < 400) {
			t.Errorf("%s: postkit allowed=%v, Postfix %q", st.cmd, ok, r.String())
			continue
		}
		if !ok && reply != r.String() {
			t.Errorf("%s: postkit %q, Postfix %q", st.cmd, reply, r.String())
		}
		var wantWarn, gotWarn []string
		for _, l := range r.Log {
			if strings.HasPrefix(l, "warning: ") {
				wantWarn = append(wantWarn, l)
			}
		}
		gotWarn = logs.take()
		if strings.Join(gotWarn, "\n") != strings.Join(wantWarn, "\n") {
			t.Errorf("%s: warnings: postkit %q, Postfix %q", st.cmd, gotWarn, wantWarn)
		}
	}
	c1.Close()
	pc1.Close()
}

// startListener listens on 127.0.0.1 and wraps the listener.
func startListener(t testing.TB, cfg ListenerConfig) (*Listener, string) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := NewListener(inner, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, inner.Addr().String()
}

func BenchmarkAnvil(b *testing.B) {
	a := mustAnvil(b, Limits{ConnectionCountLimit: 50, ConnectionRateLimit: 1 << 30, MessageRateLimit: 1 << 30}, nil)
	// 4096 clients in turn; "new-clients" makes a new entry each time.
	b.Run("connect-release", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			rel, _, _ := a.connect(netip.AddrFrom4([4]byte{10, 2, byte(i>>8) & 15, byte(i)}))
			rel()
		}
	})
	b.Run("connect-release-new-clients", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			rel, _, _ := a.connect(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}))
			rel()
		}
	})
	b.Run("connect-release-parallel", func(b *testing.B) {
		var g atomic.Int32
		b.RunParallel(func(pb *testing.PB) {
			n := byte(g.Add(1))
			i := 0
			for pb.Next() {
				rel, _, _ := a.connect(netip.AddrFrom4([4]byte{10, n, byte(i>>8) & 15, byte(i)}))
				rel()
				i++
			}
		})
	})
	b.Run("message", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			a.message(netip.AddrFrom4([4]byte{10, 3, byte(i>>8) & 15, byte(i)}))
		}
	})
}

// TestAnvilExemptionsMatchPostfix: clients in
// smtpd_client_event_limit_exceptions or smtpd_authorized_xclient_hosts
// are not limited, by Postfix or by the Listener.
func TestAnvilExemptionsMatchPostfix(t *testing.T) {
	for _, mainCF := range []string{
		"smtpd_client_event_limit_exceptions =\nsmtpd_authorized_xclient_hosts = 127.0.0.0/8\nsmtpd_client_connection_count_limit = 1\n",
		"smtpd_client_event_limit_exceptions = 127.0.0.1\nsmtpd_authorized_xclient_hosts =\nsmtpd_client_connection_count_limit = 1\n",
		"smtpd_client_event_limit_exceptions = !127.0.0.1 127.0.0.0/8\nsmtpd_authorized_xclient_hosts =\nsmtpd_client_connection_count_limit = 1\n",
	} {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: mainCF})
			s1 := p.Session(t)
			want := p.Session(t).Banner().String()
			s1.Close()

			cfg, err := config.Parse("main.cf", strings.NewReader(mainCF+"myhostname = mx.oracle.test\n"))
			if err != nil {
				t.Fatal(err)
			}
			lim, err := LimitsFrom(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ln, addr := startListener(t, ListenerConfig{Limits: lim})
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					fmt.Fprintf(c, "220 mx.oracle.test ESMTP Postfix\r\n")
					t.Cleanup(func() { c.Close() })
				}
			}()
			var got string
			for i := 0; i < 2; i++ {
				c := mustDial(t, addr)
				line, _ := bufio.NewReader(c).ReadString('\n')
				got = strings.TrimRight(line, "\r\n")
			}
			if got != want {
				t.Errorf("%s: second connection: postkit %q, Postfix %q", mainCF, got, want)
			}
			t.Logf("%s: %s", strings.ReplaceAll(mainCF, "\n", "; "), want)
		})
	}
}
