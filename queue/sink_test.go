package queue

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// smtpDeliverer is a minimal SMTP client Deliverer (one session per
// batch), enough to drive the scheduler against a real SMTP peer.
type smtpDeliverer struct{}

func (smtpDeliverer) Deliver(ctx context.Context, d *Delivery) []Result {
	res := make([]Result, len(d.Recipients))
	relay := "none"
	all := func(r Result) []Result {
		for i := range res {
			if res[i].Outcome == Pending {
				res[i] = r
				res[i].Relay = relay
			}
		}
		return res
	}
	var dialer net.Dialer
	start := time.Now()
	nc, err := dialer.DialContext(ctx, "tcp", d.Nexthop)
	if err != nil {
		return all(Result{Outcome: Delayed, DSN: "4.4.1", Site: true, Reason: "connect to " + d.Nexthop + ": " + err.Error()})
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	ip := nc.RemoteAddr().(*net.TCPAddr).IP.String()
	host := ip + "[" + ip + "]"
	relay = host + ":" + fmt.Sprint(nc.RemoteAddr().(*net.TCPAddr).Port)
	c := textproto.NewConn(nc)
	said := func(code int, msg, cmd string) string {
		return fmt.Sprintf("host %s said: %d %s (in reply to %s command)", host, code, strings.ReplaceAll(msg, "\n", " "), cmd)
	}
	// The reply's enhanced status code (RFC 3463) is the DSN when its
	// class agrees with the reply code.
	dsn := func(code int, msg string) string {
		f, _, _ := strings.Cut(msg, " ")
		if len(f) >= 5 && f[1] == '.' && int(f[0]-'0') == code/100 {
			return f
		}
		return fmt.Sprintf("%d.0.0", code/100)
	}
	fail := func(code int, msg, cmd string, site bool) []Result {
		r := Result{Outcome: Delayed, DSN: dsn(code, msg), Site: site, Reason: said(code, msg, cmd)}
		if code >= 500 {
			r.Outcome = Failed
		}
		return all(r)
	}
	cmd := func(expect int, name, format string, args ...any) (int, string, bool) {
		if format != "" {
			if err := c.PrintfLine(format, args...); err != nil {
				return 421, err.Error(), false
			}
		}
		code, msg, err := c.ReadResponse(expect)
		if err != nil && code == 0 {
			return 421, err.Error(), false
		}
		return code, msg, err == nil
	}
	if code, msg, ok := cmd(220, "CONNECT", ""); !ok {
		return fail(code, msg, "CONNECT", true)
	}
	if code, msg, ok := cmd(250, "EHLO", "EHLO postkit.test"); !ok {
		return fail(code, msg, "EHLO", true)
	}
	conn := time.Since(start)
	if code, msg, ok := cmd(250, "MAIL FROM", "MAIL FROM:<%s>", d.Envelope.Sender); !ok {
		return fail(code, msg, "MAIL FROM", false)
	}
	accepted := 0
	for i, r := range d.Recipients {
		code, msg, ok := cmd(250, "RCPT TO", "RCPT TO:<%s>", r.Addr)
		if !ok {
			res[i] = Result{Outcome: Delayed, DSN: dsn(code, msg), Relay: relay, Reason: said(code, msg, "RCPT TO")}
			if code >= 500 {
				res[i].Outcome = Failed
			}
			continue
		}
		accepted++
	}
	if accepted == 0 {
		cmd(221, "QUIT", "QUIT")
		return res
	}
	if code, msg, ok := cmd(354, "DATA", "DATA"); !ok {
		return fail(code, msg, "DATA", false)
	}
	rc, err := d.Open()
	if err != nil {
		return all(Result{Outcome: Delayed, DSN: "4.3.0", Reason: "reading the queue file: " + err.Error()})
	}
	w := c.DotWriter()
	_, err = io.Copy(w, rc)
	rc.Close()
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return all(Result{Outcome: Delayed, DSN: "4.4.2", Reason: "lost connection with " + relay + " while sending message content"})
	}
	code, msg, ok := cmd(250, "DATA", "")
	if !ok {
		return fail(code, msg, "end of DATA", false)
	}
	cmd(221, "QUIT", "QUIT")
	xfer := time.Since(start) - conn
	return all(Result{Outcome: Delivered, DSN: dsn(code, msg), Reason: fmt.Sprintf("%d %s", code, msg), Conn: conn, Xfer: xfer})
}

// TestSchedulerAgainstSMTPSink delivers a few hundred messages over real
// sockets to Postfix's smtp-sink: one sink accepts, one answers 4xx to
// RCPT (-r), one 5xx (-f), and one port has no server (a dead
// destination).
func TestSchedulerAgainstSMTPSink(t *testing.T) {
	ok := oracle.StartSMTPSink(t)
	soft := oracle.StartSMTPSink(t, "-r", "RCPT")
	hard := oracle.StartSMTPSink(t, "-f", "RCPT")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := l.Addr().String()
	l.Close()
	hops := map[string]string{"ok.example": ok, "soft.example": soft, "hard.example": hard, "down.example": down}
	route := RouterFunc(func(_ context.Context, _ *cleanup.Envelope, rcpt string) (Route, error) {
		_, dom, _ := strings.Cut(rcpt, "@")
		return Route{Transport: "smtp", Nexthop: hops[dom]}, nil
	})
	h := newHarness(t, SchedulerConfig{Deliverer: smtpDeliverer{}, Router: route})
	const n = 300
	for i := range n {
		h.send(fmt.Sprintf("s%d@example.com", i), fmt.Sprintf("a%d@ok.example", i), fmt.Sprintf("b%d@soft.example", i),
			fmt.Sprintf("c%d@hard.example", i), fmt.Sprintf("d%d@down.example", i))
	}
	h.s.Start()
	h.sync()
	count := func(sub string) int { return len(h.log.matching(sub)) }
	if got := count("@ok.example>, relay=127.0.0.1[127.0.0.1]:"); got != n || count("dsn=2.0.0, status=sent (250 2.0.0 Ok)") != n {
		t.Errorf("%d sent to the accepting sink (%d with its 250 reply), want %d", got, count("dsn=2.0.0, status=sent (250 2.0.0 Ok)"), n)
	}
	if got := count("dsn=4.3.0, status=deferred (host 127.0.0.1[127.0.0.1] said: 450 4.3.0 Error: command failed (in reply to RCPT TO command))"); got != n {
		t.Errorf("%d deferred by the 4xx sink, want %d", got, n)
	}
	if got := count("dsn=5.3.0, status=bounced (host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: command failed (in reply to RCPT TO command))"); got != n {
		t.Errorf("%d bounced by the 5xx sink, want %d", got, n)
	}
	if got := count("@down.example>, relay=none"); got != n {
		t.Errorf("%d deferred for the dead destination, want %d", got, n)
	}
	if got := count("status=deferred (delivery temporarily suspended: connect to "); got < n-10 {
		t.Errorf("only %d suspended without an attempt", got)
	}
	if got := len(h.notes.of(FailureNotice)); got != n {
		t.Errorf("%d failure notices, want %d", got, n)
	}
	if got := len(h.ids(Deferred)); got != n {
		t.Fatalf("%d deferred, want %d", got, n)
	}
	m, err := h.q.Read(h.ids(Deferred)[0])
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if p := m.Pending(); len(p) != 2 || p[0] != 1 || p[1] != 3 {
		t.Errorf("pending %v, want the soft and down recipients [1 3]", p)
	}
}
