package smtpserver_test

// SMTP AUTH against a real Dovecot: Postfix (smtpd_sasl_type = dovecot)
// and postkit (an auth.DovecotClient as the SASL provider) ask the same
// Dovecot auth service. A real Dovecot names the user in its FAIL replies
// ("FAIL\tID\tuser=alice"), so Postfix's warning then says
// sasl_username=alice; postkit must say the same, from the FAIL reply.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
	"github.com/postkit-mail/postkit/smtpserver/smtptest"
)

var dvAddrRe = regexp.MustCompile(`\[192\.0\.2\.\d+\]`)

func TestAuthThroughDovecotAgainstPostfix(t *testing.T) {
	oracle.Require(t, "postfix")
	t.Parallel()
	sock := oracle.StartDovecotAuth(t, oracle.DovecotOptions{Passwd: "alice:{PLAIN}secret::::::\n"}).Socket
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: fmt.Sprintf(aoMain, sock)})
	c, err := config.Parse("main.cf", strings.NewReader(pf.MainCF()))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := smtpserver.ConfigFrom(context.Background(), c, smtpserver.RoleSMTP, restrictions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := auth.DialDovecot(context.Background(), "unix", sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Close() })
	if cfg.Auth, err = smtpserver.SASLFrom(c, dc); err != nil {
		t.Fatal(err)
	}
	logs := &aoLogs{}
	cfg.Handoff = &smtptest.Handoff{}
	cfg.ErrorSleepTime = -1
	cfg.Logger = slog.New(logs)
	srv, err := smtpserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	ehlo := "EHLO client.example"
	dialogues := []aoDialogue{
		{"plain good", aoLines(ehlo, "AUTH PLAIN "+aoPlain("alice", "secret"))},
		{"plain bad password", aoLines(ehlo, "AUTH PLAIN "+aoPlain("alice", "wrong"))},
		{"plain unknown user", aoLines(ehlo, "AUTH PLAIN "+aoPlain("nobody", "x"))},
		{"login bad password", aoLines(ehlo, "AUTH LOGIN", aoB64("alice"), aoB64("wrong"))},
		{"cram-md5 bad password", []aoStep{{line: ehlo}, {line: "AUTH CRAM-MD5"}, {cram: true, user: "alice", pass: "wrong"}}},
		{"plain malformed", aoLines(ehlo, "AUTH PLAIN "+aoB64("no-nuls-here"))},
	}
	failed := func(lines []string) []string {
		var out []string
		for _, l := range lines {
			if strings.Contains(l, "authentication failed") {
				out = append(out, l)
			}
		}
		return out
	}
	named := 0
	for i, d := range dialogues {
		// Dovecot delays the answers to a client address that failed
		// before (auth_penalty): each dialogue on each server poses as
		// another client, and the address is masked in the logs.
		pfSteps := append(aoLines(fmt.Sprintf("XCLIENT ADDR=192.0.2.%d", 10+i)), d.steps...)
		d.steps = append(aoLines(fmt.Sprintf("XCLIENT ADDR=192.0.2.%d", 110+i)), d.steps...)
		ps := pf.Session(t)
		var pfLog []string
		want := aoPlay(t, ps.Banner().String(), func(line string, _ bool) (string, bool) {
			r := ps.Cmd(line)
			pfLog = append(pfLog, r.Log...)
			return r.String(), r.Closed
		}, aoDialogue{d.name, pfSteps})
		ps.Close()
		logs.take()
		pc := smtptest.Dial(t, ln.Addr().String())
		got := aoPlay(t, pc.Banner().String(), aoSmtptest(pc), d)
		pc.Close()
		if w, g := strings.Join(want, "\n"), strings.Join(got, "\n"); w != g {
			t.Errorf("%s: replies differ\n--- Postfix:\n%s\n--- postkit:\n%s", d.name, w, g)
		}
		mask := func(lines []string) []string {
			for i, l := range lines {
				lines[i] = dvAddrRe.ReplaceAllString(l, "[CLIENT]")
			}
			return lines
		}
		wl, gl := mask(failed(pfLog)), mask(failed(logs.take()))
		if w, g := strings.Join(wl, "\n"), strings.Join(gl, "\n"); w != g {
			t.Errorf("%s: log lines differ\n--- Postfix:\n%s\n--- postkit:\n%s", d.name, w, g)
		}
		for _, l := range wl {
			if !strings.HasSuffix(l, "sasl_username=(unavailable)") {
				named++
			}
		}
	}
	if named == 0 {
		t.Errorf("Dovecot never named the user in a FAIL: the test shows nothing about sasl_username")
	}
}
