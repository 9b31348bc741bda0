package smtp_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mda/smtp"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/smtpserver"
)

var logLine = regexp.MustCompile(`to=<([^>]*)>, relay=([^,]*), .*dsn=([^,]*), status=(\w+) \((.*)\)$`)

// TestPostfixOracle delivers the same mail through a private Postfix and
// through the agent, to Postfix's smtp-sink in its failure modes, and
// compares relay=, dsn=, the status and the reason text with Postfix's
// smtp(8) log lines.
func TestPostfixOracle(t *testing.T) {
	oracle.Require(t, "postfix")
	oracle.Require(t, "smtp-sink")
	cases := []struct {
		name  string
		flags []string // nil: no server at all
	}{
		{"ok", []string{}},
		{"rcpt5xx", []string{"-f", "RCPT"}},
		{"rcpt4xx", []string{"-r", "RCPT"}},
		{"mail5xx", []string{"-f", "MAIL"}},
		{"mail4xx", []string{"-r", "MAIL"}},
		{"data5xx", []string{"-f", "DATA"}},
		{"dot4xx", []string{"-r", "."}},
		{"dot5xx", []string{"-f", "."}},
		{"greet5xx", []string{"-f", "CONNECT"}},
		{"greet4xx", []string{"-r", "CONNECT"}},
		{"ehlo5xx", []string{"-f", "EHLO,HELO"}},
		{"ehlo4xx", []string{"-r", "EHLO"}},
		{"ehlo5xxonly", []string{"-f", "EHLO"}},
		{"helo4xx", []string{"-f", "EHLO", "-r", "HELO"}},
		{"lostrcpt", []string{"-q", "RCPT"}},
		{"lostdot", []string{"-q", "."}},
		{"421mail", []string{"-Q", "MAIL"}},
		{"421rcpt", []string{"-Q", "RCPT"}},
		{"refused", nil},
		{"tlsrequired", []string{}},
		{"saslnomech", []string{}},
		{"lmtp-ok", []string{"-L"}},
		{"lmtp-dot4xx", []string{"-L", "-r", "."}},
		{"lmtp-dot5xx", []string{"-L", "-f", "."}},
		{"lmtp-rcpt5xx", []string{"-L", "-f", "RCPT"}},
		{"lmtp-lhlo5xx", []string{"-L", "-f", "LHLO"}},
		{"lmtp-lost", []string{"-L", "-q", "."}},
		{"greettimeout", nil}, // a server that never greets; smtp_helo_timeout = 1s
		{"lmtp-unix", []string{"-L"}},
		{"lmtp-unix-dot4xx", []string{"-L", "-r", "."}},
		// SMTPUTF8 mail with a UTF-8 recipient; smtp-sink offers no
		// SMTPUTF8 (the local part "u" is replaced by "ü" below).
		{"utf8", []string{}},
	}
	local := func(name string) string {
		if name == "utf8" {
			return "\u00fc"
		}
		return "user"
	}
	// Unix sockets where both smtp-sink (as nobody) and Postfix's lmtp
	// can reach them.
	sockDir, err := os.MkdirTemp("", "lmtp-sink")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	os.Chmod(sockDir, 0o777)
	isLMTP := func(name string) bool { return strings.HasPrefix(name, "lmtp-") }
	var transport strings.Builder
	nexthops := map[string]string{}
	for _, c := range cases {
		if strings.HasPrefix(c.name, "lmtp-unix") {
			nexthops[c.name] = "unix:" + filepath.Join(sockDir, c.name)
			startSink(t, nexthops[c.name], c.flags...)
			fmt.Fprintf(&transport, "%s.test lmtp:%s\n", c.name, nexthops[c.name])
			continue
		}
		port := freePort(t, "127.0.0.2")
		addr := fmt.Sprintf("127.0.0.2:%d", port)
		if c.flags != nil {
			startSink(t, addr, c.flags...)
		}
		if c.name == "greettimeout" {
			silent(t, addr)
		}
		if isLMTP(c.name) {
			nexthops[c.name] = "inet:" + addr
			fmt.Fprintf(&transport, "%s.test lmtp:%s\n", c.name, nexthops[c.name])
			continue
		}
		nexthops[c.name] = "[127.0.0.2]:" + fmt.Sprint(port)
		fmt.Fprintf(&transport, "%s.test smtp:%s\n", c.name, nexthops[c.name])
	}
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main: "default_transport = smtp\nrelay_transport = smtp\ntransport_maps = texthash:$config_directory/transport\n" +
			"smtp_connection_cache_on_demand = no\nsmtp_helo_timeout = 1s\n" +
			"smtp_tls_policy_maps = texthash:$config_directory/tls_policy\n" +
			"smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = texthash:$config_directory/sasl_passwd\n",
		Files: []oracle.File{
			{Name: "transport", Data: transport.String()},
			{Name: "tls_policy", Data: nexthops["tlsrequired"] + " encrypt\n"},
			{Name: "sasl_passwd", Data: nexthops["saslnomech"] + " user:pass\n"},
		},
	})
	for _, c := range cases {
		s := p.Session(t)
		mail := "MAIL FROM:<>"
		if c.name == "utf8" {
			mail += " SMTPUTF8"
		}
		for _, cmd := range []string{"EHLO client.example", mail, "RCPT TO:<" + local(c.name) + "@" + c.name + ".test>", "DATA"} {
			if r := s.Cmd(cmd); r.Code >= 400 {
				t.Fatalf("%s: %s: %s", c.name, cmd, r)
			}
		}
		if r := s.Message(strings.ReplaceAll(testMsg, "\r\n", "\n")); r.Code != 250 {
			t.Fatalf("%s: %s", c.name, r)
		}
		s.Close()
	}

	// The agent, configured from the same main.cf.
	cfg, err := config.Load(p.ConfigDir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := smtp.FromConfig(context.Background(), cfg, "smtp", smtp.Options{Resolver: newWorld(t).res})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	la, err := smtp.FromConfig(context.Background(), cfg, "lmtp", smtp.Options{Resolver: newWorld(t).res})
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	status := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rcpt := local(c.name) + "@" + c.name + ".test"
			line := p.WaitLog(t, 30*time.Second, "to=<"+rcpt+">", "status=")
			m := logLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("unparsed log line %q", line)
			}
			agent := a
			if isLMTP(c.name) {
				agent = la
			}
			d := delivery(nexthops[c.name], "", testMsg, rcpt)
			d.Envelope.SMTPUTF8 = c.name == "utf8"
			r := agent.Deliver(context.Background(), d)[0]
			relay := r.Relay
			if relay == "" {
				relay = "none"
			}
			got := fmt.Sprintf("relay=%s, dsn=%s, status=%s (%s)", relay, r.DSN, status[r.Outcome], r.Reason)
			want := fmt.Sprintf("relay=%s, dsn=%s, status=%s (%s)", m[2], m[3], m[4], m[5])
			if got != want {
				t.Errorf("\npostkit: %s\npostfix: %s", got, want)
			}
			if testing.Verbose() {
				t.Logf("%s", want)
			}
		})
	}
}

// TestPostfixDowngradeOracle sends the same 8BITMIME message through
// Postfix and through the agent to smtp-sink without 8BITMIME, and
// compares the converted bodies byte for byte.
func TestPostfixDowngradeOracle(t *testing.T) {
	oracle.Require(t, "postfix")
	w := newWorld(t)
	pfPort, ourPort := freePort(t, "127.0.0.2"), freePort(t, "127.0.0.3")
	pfDir := startSink(t, fmt.Sprintf("127.0.0.2:%d", pfPort), "-8")
	ourDir := startSink(t, fmt.Sprintf("127.0.0.3:%d", ourPort), "-8")
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main:  "default_transport = smtp\nrelay_transport = smtp\ntransport_maps = inline:{dg.test=smtp:[127.0.0.2]:" + fmt.Sprint(pfPort) + "}\n",
		Files: nil,
	})
	long := strings.Repeat("gr\xc3\xbc\xc3\x9fe = ", 12)
	msg := "Subject: 8bit\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"=-b1\"\n\nMARKER preamble\n" +
		"--=-b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" +
		long + "\ntrailing space \nFrom here\n.dot\n=3D\n\n" +
		"--=-b1\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\nK\xe4se\n" +
		"--=-b1\nContent-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\nplain\n--=-b1--\nepilogue\n"
	s := p.Session(t)
	for _, cmd := range []string{"EHLO client.example", "MAIL FROM:<> BODY=8BITMIME", "RCPT TO:<u@dg.test>", "DATA"} {
		if r := s.Cmd(cmd); r.Code >= 400 {
			t.Fatalf("%s: %s", cmd, r)
		}
	}
	if r := s.Message(msg); r.Code != 250 {
		t.Fatal(r)
	}
	s.Close()
	p.WaitLog(t, 30*time.Second, "to=<u@dg.test>", "status=sent")

	a := w.agent(t, func(c *smtp.Config) { c.Port = ourPort })
	d := delivery("[127.0.0.3]", "", strings.ReplaceAll(msg, "\n", "\r\n"), "u@dg.test")
	d.Envelope.Body = "8BITMIME"
	if r := a.Deliver(context.Background(), d); r[0].Outcome != queue.Delivered {
		t.Fatalf("%+v", r[0])
	}
	body := func(dir string) string {
		dumps := sinkDumps(dir)
		if len(dumps) != 1 {
			t.Fatalf("%d dumps in %s", len(dumps), dir)
		}
		i := strings.Index(dumps[0], "MARKER")
		if i < 0 {
			t.Fatalf("no marker in %q", dumps[0])
		}
		return dumps[0][i:]
	}
	want, got := body(pfDir), body(ourDir)
	if got != want {
		t.Errorf("converted body differs from Postfix's:\n%s", oracle.Diff(want, got))
	}
}

// TestPostfixMailArgsOracle compares the MAIL FROM and RCPT TO parameters
// (DSN, BODY) Postfix's smtp(8) sends with the agent's, as smtp-sink
// records them, and the body with a line over smtp_line_length_limit. SIZE differs by design (Postfix counts its own queue file)
// and is compared for presence only.
func TestPostfixMailArgsOracle(t *testing.T) {
	oracle.Require(t, "postfix")
	w := newWorld(t)
	pfPort, ourPort := freePort(t, "127.0.0.2"), freePort(t, "127.0.0.3")
	pfDir := startSink(t, fmt.Sprintf("127.0.0.2:%d", pfPort))
	ourDir := startSink(t, fmt.Sprintf("127.0.0.3:%d", ourPort))
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main: "default_transport = smtp\nrelay_transport = smtp\ntransport_maps = inline:{dsn.test=smtp:[127.0.0.2]:" + fmt.Sprint(pfPort) + "}\n",
	})
	s := p.Session(t)
	for _, cmd := range []string{"EHLO client.example", "MAIL FROM:<s@example.org> BODY=8BITMIME RET=HDRS ENVID=abc+3Dx",
		"RCPT TO:<u@dsn.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;U+2Bx@dsn.test", "RCPT TO:<v@dsn.test>", "DATA"} {
		if r := s.Cmd(cmd); r.Code >= 400 {
			t.Fatalf("%s: %s", cmd, r)
		}
	}
	// A 1500-character line: smtp_line_length_limit (998) breaks it.
	long := strings.Repeat("0123456789", 150)
	body := "Subject: x\n\nMARKER\n" + long + "\n.dot\n"
	if r := s.Message(body); r.Code != 250 {
		t.Fatal(r)
	}
	s.Close()
	p.WaitLog(t, 30*time.Second, "to=<v@dsn.test>", "status=sent")

	a := w.agent(t, func(c *smtp.Config) { c.Port = ourPort })
	d := delivery("[127.0.0.3]", "s@example.org", strings.ReplaceAll(body, "\n", "\r\n"), "u@dsn.test", "v@dsn.test")
	d.Envelope.Body, d.Envelope.Ret, d.Envelope.EnvID = "8BITMIME", "HDRS", "abc=x"
	d.Recipients[0].Notify, d.Recipients[0].ORCPT = []string{"SUCCESS", "DELAY"}, "rfc822;U+x@dsn.test"
	if r := a.Deliver(context.Background(), d); r[0].Outcome != queue.Delivered || r[1].Outcome != queue.Delivered {
		t.Fatalf("%+v", r)
	}
	args := func(dir string) string {
		dumps := sinkDumps(dir)
		if len(dumps) != 1 {
			t.Fatalf("%d dumps", len(dumps))
		}
		var out []string
		for _, l := range strings.Split(dumps[0], "\n") {
			if strings.HasPrefix(l, "X-Mail-Args:") || strings.HasPrefix(l, "X-Rcpt-Args:") {
				f := strings.Fields(l)
				for i, x := range f {
					if strings.HasPrefix(x, "SIZE=") {
						f[i] = "SIZE=n"
					}
				}
				out = append(out, strings.Join(f, " "))
			}
		}
		return strings.Join(out, "\n")
	}
	want, got := args(pfDir), args(ourDir)
	if got != want {
		t.Errorf("\npostkit:\n%s\npostfix:\n%s", got, want)
	}
	from := func(dir string) string {
		d := sinkDumps(dir)[0]
		return d[strings.Index(d, "MARKER"):]
	}
	if want, got := from(pfDir), from(ourDir); got != want {
		t.Errorf("long line differs from Postfix's:\n%s", oracle.Diff(want, got))
	}
}

// TestDeliverToPostfix uses a private Postfix smtpd as the receiving
// server: per-recipient rejection, DSN parameters, TLS verified against
// its certificate (smtpd logs the TLS session), and the queue ID of its
// "250 ... queued as" in its log.
func TestDeliverToPostfix(t *testing.T) {
	oracle.Require(t, "postfix")
	dir, err := os.MkdirTemp("", "pfcert")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	cert, err := smtpserver.SelfSigned("mx.oracle.test")
	if err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := smtpserver.WriteCertificatePEM(cert, crt, key); err != nil {
		t.Fatal(err)
	}
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = " + crt +
		"\nsmtpd_tls_key_file = " + key + "\nsmtpd_tls_loglevel = 1\nsmtpd_recipient_restrictions = check_recipient_access texthash:$config_directory/access, permit_mynetworks, reject\n",
		Files: []oracle.File{{Name: "access", Data: "bad@x.test REJECT no thanks\nlater@x.test 450 try later\n"}}})
	host, port, _ := net.SplitHostPort(p.Addr)
	w := newWorld(t)
	roots := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	roots.AddCert(leaf)
	a := w.agent(t, func(c *smtp.Config) { c.TLSLevel = "verify"; c.TLSVerifyMatch = []string{"mx.oracle.test"} },
		func(o *smtp.Options) { o.TLSConfig = &tls.Config{RootCAs: roots} })
	d := delivery("["+host+"]:"+port, "s@example.org", testMsg, "good@x.test", "bad@x.test", "later@x.test")
	d.Envelope.Ret, d.Envelope.EnvID = "FULL", "env-1"
	r := a.Deliver(context.Background(), d)
	check(t, r[0], queue.Delivered, "2.0.0", "250 2.0.0 Ok: queued as ")
	check(t, r[1], queue.Failed, "5.7.1", "host 127.0.0.1[127.0.0.1] said: 554 5.7.1 <bad@x.test>: Recipient address rejected: no thanks (in reply to RCPT TO command)")
	check(t, r[2], queue.Delayed, "4.7.1", "host 127.0.0.1[127.0.0.1] said: 450 4.7.1 <later@x.test>: Recipient address rejected: try later (in reply to RCPT TO command)")
	_, qid, _ := strings.Cut(r[0].Reason, "queued as ")
	line := p.WaitLog(t, 10*time.Second, qid+": from=<s@example.org>")
	if !strings.Contains(line, "nrcpt=1") {
		t.Errorf("Postfix's qmgr line: %s", line)
	}
	// The session was encrypted and the certificate trusted.
	p.WaitLog(t, 10*time.Second, "TLS connection established from")
}

// silent accepts connections on addr and never says anything.
func silent(t *testing.T, addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
}
