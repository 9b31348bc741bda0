package cleanup

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/dkim"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/milter"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
)

// testMilter is a milter that answers end of message with eom.
type testMilter struct {
	gomilter.NoOpMilter
	eom  func(m gomilter.Modifier) (*gomilter.Response, error)
	seen *[]string
}

func (t *testMilter) Header(name, value string, m gomilter.Modifier) (*gomilter.Response, error) {
	*t.seen = append(*t.seen, name+": "+value)
	return gomilter.RespContinue, nil
}

func (t *testMilter) EndOfMessage(m gomilter.Modifier) (*gomilter.Response, error) { return t.eom(m) }

func startTestMilter(t *testing.T, eom func(m gomilter.Modifier) (*gomilter.Response, error), seen *[]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return &testMilter{eom: eom, seen: seen} }),
		gomilter.WithActions(gomilter.OptAddHeader|gomilter.OptChangeBody|gomilter.OptAddRcpt|
			gomilter.OptRemoveRcpt|gomilter.OptChangeHeader|gomilter.OptQuarantine|gomilter.OptChangeFrom),
	)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "inet:" + ln.Addr().String()
}

func milterConfig(t *testing.T, list, defAction string) *MilterConfig {
	t.Helper()
	specs, err := milter.ParseList(list)
	if err != nil {
		t.Fatal(err)
	}
	mc := &milter.Config{Milters: specs, DefaultAction: defAction, ConnectTimeout: 2 * time.Second,
		CommandTimeout: 5 * time.Second, ContentTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	return &MilterConfig{SMTPD: mc, NonSMTPD: mc}
}

func init() { gomilter.LogWarning = func(string, ...any) {} }

// TestMilters: a real milter (go-milter's server on a loopback port)
// changes headers, body, sender and recipients, rejects, quarantines and
// discards; cleanup applies each before the queue file is committed.
func TestMilters(t *testing.T) {
	in := Input{Sender: "s@example.com", Recipients: []Recipient{{Addr: "r1@example.org"}, {Addr: "r2@example.org"}},
		Client: ClientInfo{Name: "client.example", Addr: "192.0.2.7", Helo: "helo.example", Proto: "ESMTP"}}
	msg := "Received: from helo.example\n\tby mx\nSubject: milter test\nX-Old: 1\n\nbody line\n"
	tests := []struct {
		name     string
		eom      func(m gomilter.Modifier) (*gomilter.Response, error)
		wantErr  string
		gone     bool
		check    func(t *testing.T, env *Envelope, data string)
		wantLogs []string
	}{
		{
			name: "modifications",
			eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
				m.AddHeader("X-Scanned", "clean")
				m.ChangeHeader(1, "X-Old", "")
				m.AddRecipient("<added@example.net>", "")
				m.DeleteRecipient("<r2@example.org>")
				m.ChangeFrom("<new-sender@example.com>", "")
				m.ReplaceBodyRawChunk([]byte("new body\r\n"))
				return gomilter.RespAccept, nil
			},
			check: func(t *testing.T, env *Envelope, data string) {
				if env.Sender != "new-sender@example.com" {
					t.Errorf("sender %q", env.Sender)
				}
				if got := addrs(env.Recipients); got != "r1@example.org,added@example.net" {
					t.Errorf("recipients %s", got)
				}
				if !strings.Contains(data, "X-Scanned: clean\r\n") || strings.Contains(data, "X-Old") || !strings.HasSuffix(data, "\r\n\r\nnew body\r\n") {
					t.Errorf("content:\n%s", data)
				}
				if env.Size != int64(len(data)) {
					t.Errorf("size %d for %d bytes", env.Size, len(data))
				}
			},
		},
		{
			name: "reject",
			eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
				return gomilter.RejectWithCodeAndReason(554, "5.7.1 virus found")
			},
			wantErr:  "554 5.7.1 virus found",
			wantLogs: []string{"QUEUEID: milter-reject: END-OF-MESSAGE from client.example[192.0.2.7]: 5.7.1 virus found; from=<s@example.com> to=<r1@example.org> proto=ESMTP helo=<helo.example>"},
		},
		{
			name:    "tempfail",
			eom:     func(m gomilter.Modifier) (*gomilter.Response, error) { return gomilter.RespTempFail, nil },
			wantErr: "451 4.7.1 Service unavailable - try again later", // Postfix's words for a milter's tempfail
		},
		{
			name: "quarantine",
			eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
				m.Quarantine("suspicious")
				return gomilter.RespAccept, nil
			},
			check: func(t *testing.T, env *Envelope, data string) {
				if !env.Hold || env.HoldReason != "suspicious" {
					t.Errorf("hold %v %q", env.Hold, env.HoldReason)
				}
			},
			wantLogs: []string{"QUEUEID: milter-hold: END-OF-MESSAGE from client.example[192.0.2.7]: milter triggers HOLD action; from=<s@example.com> to=<r1@example.org> proto=ESMTP helo=<helo.example>"},
		},
		{
			name: "discard",
			eom:  func(m gomilter.Modifier) (*gomilter.Response, error) { return gomilter.RespDiscard, nil },
			gone: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var seen []string
			addr := startTestMilter(t, tc.eom, &seen)
			c, st, rec := newTest(t, Config{Milters: milterConfig(t, addr, "tempfail"), TempDir: t.TempDir()})
			env, data, id, err := submit(t, c, st, in, msg)
			for _, w := range tc.wantLogs {
				if w = strings.ReplaceAll(w, "QUEUEID", id); !rec.has(w) {
					t.Errorf("no log line %q in %q", w, rec.all())
				}
			}
			if tc.wantErr != "" {
				var re *RejectError
				if !errors.As(err, &re) || re.Reply.String() != tc.wantErr {
					t.Fatalf("got %v, want %s", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" || tc.gone {
				if ents, _ := os.ReadDir(st.Dir); len(ents) != 0 {
					t.Errorf("files left behind: %v", ents)
				}
				return
			}
			// The milter did not see the SMTP server's Received: header.
			if len(seen) == 0 || strings.HasPrefix(seen[0], "Received") {
				t.Errorf("milter saw headers %q", seen)
			}
			tc.check(t, env, data)
		})
	}
	// A milter that cannot be reached: milter_default_action decides.
	// (The reply wording is package milter's; cleanup passes it on.)
	for _, tc := range []struct {
		action string
		code   int
	}{{"tempfail", 451}, {"accept", 0}, {"reject", 550}} {
		c, st, _ := newTest(t, Config{Milters: milterConfig(t, "inet:127.0.0.1:1", tc.action)})
		_, _, _, err := submit(t, c, st, in, msg)
		var re *RejectError
		if tc.code == 0 && err != nil || tc.code != 0 && (!errors.As(err, &re) || re.Reply.Code != tc.code) {
			t.Errorf("milter_default_action=%s: %v, want code %d", tc.action, err, tc.code)
		}
	}
}

func testKey(t *testing.T) (*dkim.Key, string) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := dkim.PublicRecord(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &dkim.Key{Domain: "example.com", Selector: "sel", Signer: priv}, rec
}

// TestDKIM: local mail is signed with the sender domain's key; mail from
// other clients is verified and gets Authentication-Results; a signature
// postkit made verifies.
func TestDKIM(t *testing.T) {
	key, rec := testKey(t)
	signer, err := dkim.NewSigner(func(ctx context.Context, addr, domain string) (*dkim.Key, error) {
		if domain == "example.com" {
			return key, nil
		}
		return nil, nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	txt := func(ctx context.Context, name string) ([]string, error) {
		if name == "sel._domainkey.example.com" {
			return []string{rec}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	d := &DKIMConfig{Signer: signer, Verifier: &dkim.Verifier{AuthServID: "mx.example.com", LookupTXT: txt}}
	c, st, _ := newTest(t, Config{DKIM: d})
	env, signed, _, err := submit(t, c, st, Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "r@example.org"}}, Local: true},
		"From: joe@example.com\nTo: r@example.org\nSubject: signed\n\nbody\n")
	if err != nil {
		t.Fatal(err)
	}
	sig, _, _ := strings.Cut(signed, "\r\nFrom:")
	if !strings.HasPrefix(sig, "DKIM-Signature: ") || !strings.Contains(sig, "a=ed25519-sha256;") || !strings.Contains(sig, "d=example.com;") || strings.Contains(strings.ReplaceAll(sig, "\r\n", ""), "\n") {
		t.Fatalf("not signed:\n%s", signed)
	}
	if env.Size != int64(len(signed)) {
		t.Errorf("size %d for %d bytes", env.Size, len(signed))
	}
	res, err := d.Verifier.Verify(context.Background(), strings.NewReader(signed))
	if err != nil || len(res) != 1 || res[0].Value != dkim.Pass {
		t.Errorf("verify: %+v %v", res, err)
	}
	// The signed message arrives at another MTA from a remote client.
	remote := Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "r@example.org"}}, Client: ClientInfo{Name: "x", Addr: "192.0.2.9"}}
	_, verified, _, err := submit(t, c, st, remote, signed)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(verified, "Authentication-Results: mx.example.com;\r\n\tdkim=pass") {
		t.Errorf("verification result:\n%s", verified)
	}
	// A changed body fails.
	_, tampered, _, err := submit(t, c, st, remote, strings.Replace(signed, "\r\n\r\nbody", "\r\n\r\nBODY", 1))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tampered, "Authentication-Results: mx.example.com;\r\n\tdkim=fail") {
		t.Errorf("tampered message result:\n%s", tampered)
	}
}

// TestDKIMWithOpenDKIM: opendkim (Debian's), run as a milter behind
// cleanup in verify mode, checks the signature postkit's cleanup made: an
// independent verifier, reached through the milter integration.
func TestDKIMWithOpenDKIM(t *testing.T) {
	bin := oracle.Require(t, "opendkim")
	// Debian's opendkim verifies RSA signatures only.
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := dkim.PublicRecord(priv)
	if err != nil {
		t.Fatal(err)
	}
	key := &dkim.Key{Domain: "example.com", Selector: "sel", Signer: priv}
	signer, err := dkim.NewSigner(func(ctx context.Context, addr, domain string) (*dkim.Key, error) { return key, nil },
		&dkim.Options{HeaderCanonicalization: "relaxed", BodyCanonicalization: "relaxed"})
	if err != nil {
		t.Fatal(err)
	}
	c, st, _ := newTest(t, Config{DKIM: &DKIMConfig{Signer: signer}})
	_, signed, _, err := submit(t, c, st, Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "r@example.org"}}, Local: true},
		"From: Joe <joe@example.com>\nTo: r@example.org\nSubject: for opendkim\n\nHello,\n\n  spaced   line\n")
	if err != nil {
		t.Fatal(err)
	}
	// opendkim in verify mode (the SMTP server's Received: header on
	// top, which milters do not see) with the key record as its test DNS data.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dns"), []byte("sel._domainkey.example.com "+rec+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := fmt.Sprintf("Syslog no\nMode v\nSocket inet:%d@127.0.0.1\nPidFile %s/pid\nAuthservID opendkim.test\nAlwaysAddARHeader true\nTestDNSData file:%s/dns\n", port, dir, dir)
	if err := os.WriteFile(filepath.Join(dir, "opendkim.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-f", "-x", filepath.Join(dir, "opendkim.conf"))
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("opendkim did not start:\n%s", stderr.String())
		}
	}
	c2, st2, _ := newTest(t, Config{Milters: milterConfig(t, "inet:"+addr, "tempfail")})
	_, out, _, err := submit(t, c2, st2, Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "r@example.org"}},
		Client: ClientInfo{Name: "x", Addr: "192.0.2.9", Helo: "x"}}, "Received: from x (x [192.0.2.9])\r\n\tby mx.example.com (Postfix) with ESMTP id X\r\n"+signed)
	if err != nil {
		t.Fatal(err)
	}
	hdr, _, _ := strings.Cut(out, "\r\n\r\n")
	if !strings.Contains(hdr, "Authentication-Results: opendkim.test;") || !strings.Contains(unfold(hdr), "dkim=pass") {
		t.Errorf("opendkim did not pass postkit's signature:\n%s\n%s", hdr, stderr.String())
	}
}

// TestMilterThroughSMTP: smtpd_milters from main.cf, with the real SMTP
// server and Python's smtplib as the client: a milter's reject reaches the
// client at the end of DATA, its header change is in the queued message.
func TestMilterThroughSMTP(t *testing.T) {
	py := oracle.Require(t, "python3")
	var seen []string
	addr := startTestMilter(t, func(m gomilter.Modifier) (*gomilter.Response, error) {
		if strings.Contains(strings.Join(seen, "\n"), "Subject: bad") {
			return gomilter.RejectWithCodeAndReason(550, "5.7.0 milter says no")
		}
		m.AddHeader("X-Milter", "seen")
		return gomilter.RespAccept, nil
	}, &seen)
	cfg, err := config.Parse("main.cf", strings.NewReader("compatibility_level = 3.6\nmyhostname = mx.example.com\n"+
		"mynetworks = 127.0.0.0/8\nsmtpd_milters = "+addr+"\nmilter_default_action = tempfail\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cc, err := ConfigFromMain(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &logRecorder{}
	cc.Logger = slog.New(rec)
	cc.Milters.SMTPD.Logger = slog.New(slog.DiscardHandler)
	st, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := New(cc, st)
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := smtpserver.ConfigFrom(ctx, cfg, smtpserver.RoleSMTP, restrictions.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	scfg.Handoff = cl.Handoff()
	srv, err := smtpserver.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	script := `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="py.example")
for subj in ("good", "bad"):
    try:
        s.sendmail("joe@example.com", ["user@example.net"], "Subject: %s\r\n\r\nhello\r\n" % subj)
        print(subj, "-> 250")
    except smtplib.SMTPResponseException as e:
        print(subj, "->", e.smtp_code, e.smtp_error.decode())
s.quit()
`
	out, err := exec.Command(py, "-c", script, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "good -> 250\n") || !strings.Contains(string(out), "bad -> 550 5.7.0 milter says no\n") {
		t.Errorf("client saw:\n%s", out)
	}
	ids, _ := st.List()
	if len(ids) != 1 {
		t.Fatalf("queued %v, want one message", ids)
	}
	_, data, _ := st.Read(ids[0])
	if !strings.Contains(string(data), "\r\nX-Milter: seen\r\n") || !strings.HasPrefix(string(data), "Received: from py.example") {
		t.Errorf("queued message:\n%s", data)
	}
}
