package cleanup

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// localCase is one sendmail-style local submission.
type localCase struct {
	name     string
	args     []string // sendmail flags besides -f/-F
	sender   string
	fullName string
	rcpts    []string
	extract  bool
	msg      string
}

var pickupReceived = regexp.MustCompile(`(?m)\AReceived: by mx\.oracle\.test \(Postfix, from userid \d+\)\n\tid QUEUEID; DATE\n`)

// TestOracleLocalSubmission compares local submission: Postfix's
// sendmail (postdrop, pickup, cleanup) against postkit's cleanup with
// Input.Local, as pickup feeds it: sendmail -t recipient extraction
// (with Resent- headers and Bcc), the From: header made from -F with
// header_from_format = standard, the missing headers, and header address
// rewriting in the local context. Postfix keeps each message in the hold
// queue (a header check), where postcat reads it.
func TestOracleLocalSubmission(t *testing.T) {
	oracle.Require(t, "postcat")
	main := `mydestination = example.com
myorigin = example.com
header_checks = regexp:$config_directory/header_checks
`
	files := []oracle.File{{Name: "header_checks", Data: "/^X-Local-Test:/  HOLD\n"}}
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main, Files: files})
	pf.EnablePickup(t)

	dir := t.TempDir()
	if err := oracle.WriteConfigDir(dir, oracle.PostfixOptions{Main: main, Files: files}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "etc"))
	if err != nil {
		if cfg, err = config.Load(dir); err != nil {
			t.Fatal(err)
		}
	}
	cc, err := ConfigFromMain(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &logRecorder{}
	cc.Logger = slog.New(rec)
	st, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cc, st)
	if err != nil {
		t.Fatal(err)
	}

	cases := []localCase{
		{name: "t with to cc bcc", extract: true, sender: "joe", fullName: "Joe Q. Public",
			msg: "To: ann, bob@example.org\nCc: \"Carol C.\" <carol>\nBcc: dave@example.net\nSubject: t\n\nbody\n"},
		{name: "t with resent", extract: true, sender: "joe@example.com", fullName: "Joe",
			msg: "From: orig@example.org\nTo: ann@example.org\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <m@x>\nResent-To: eve@example.net\nResent-Bcc: frank\nSubject: r\n\nbody\n"},
		{name: "t plus command line", extract: true, sender: "joe", rcpts: []string{"zed@example.org"},
			msg: "To: ann@example.org\nSubject: both\n\nbody\n"},
		{name: "full name with specials", sender: "joe", fullName: `Joe "Q" (Public), Jr.`, rcpts: []string{"ann@example.org"},
			msg: "Subject: name\n\nbody\n"},
		{name: "plain name", sender: "joe", fullName: "Joe Public", rcpts: []string{"ann"},
			msg: "To: ann\nSubject: plain\n\nbody\n"},
		{name: "no full name", sender: "joe", rcpts: []string{"ann@example.org"}, msg: "Subject: none\n\nbody\n"},
		{name: "existing from", sender: "joe", fullName: "Ignored Name", rcpts: []string{"ann@example.org"},
			msg: "From: someone\nReply-To: other\nSubject: kept\n\nbody\n"},
	}
	compared := 0
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tag := fmt.Sprintf("case-%d-%d", i, time.Now().UnixNano())
			msg := "X-Local-Test: " + tag + "\n" + tc.msg
			args := []string{"-i", "-f", tc.sender}
			// Always -F: without it Postfix's sendmail takes the name from
			// $NAME or the user's passwd entry, which is sendmail's part.
			args = append(args, "-F", tc.fullName)
			if tc.extract {
				args = append(args, "-t")
			}
			args = append(args, tc.rcpts...)
			if res := pf.Sendmail(t, []byte(msg), args...); res.Code != 0 {
				t.Fatalf("sendmail: %d %s", res.Code, res.Stderr)
			}
			line := pf.WaitLog(t, 20*time.Second, "hold: header X-Local-Test: "+tag)
			m := regexp.MustCompile(`\]: ([0-9A-Za-z]+): hold:`).FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("no queue ID in %q", line)
			}
			// The hold line is logged while cleanup still writes the file:
			// wait until it is complete and in the hold queue.
			var out string
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				out = string(pf.Postcat(t, "-q", m[1]).Stdout)
				if strings.Contains(out, "*** ENVELOPE RECORDS hold/") && strings.Contains(out, "*** MESSAGE FILE END") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s never reached the hold queue:\n%s", m[1], out)
				}
			}
			want := parsePostcat(out)

			in := Input{Sender: tc.sender, FullName: tc.fullName, ExtractRecipients: tc.extract, Local: true,
				Client: ClientInfo{Name: "localhost", Addr: "127.0.0.1"}}
			for _, r := range tc.rcpts {
				in.Recipients = append(in.Recipients, Recipient{Addr: r})
			}
			env, data, id, err := submit(t, c, st, in, msg)
			if err != nil {
				t.Fatal(err)
			}
			if env.Sender != want.sender {
				t.Errorf("sender: Postfix %q, postkit %q", want.sender, env.Sender)
			}
			var got, wantR []string
			for _, r := range env.Recipients {
				got = append(got, r.Original+" -> "+r.Addr)
			}
			for _, r := range want.recipients {
				wantR = append(wantR, r[:strings.Index(r, " notify=")])
			}
			if strings.Join(got, "\n") != strings.Join(wantR, "\n") {
				t.Errorf("recipients:\nPostfix:\n\t%s\npostkit:\n\t%s", strings.Join(wantR, "\n\t"), strings.Join(got, "\n\t"))
			}
			// Postfix's pickup adds its Received: header; postkit's
			// pickup does that before cleanup, so it is not compared.
			wc := pickupReceived.ReplaceAllString(maskContent(want.content, m[1]), "")
			gc := maskContent(data, id)
			if wc != gc {
				t.Errorf("content differs:\n%s\nPostfix:\n%s\npostkit:\n%s", oracle.Diff(wc, gc), wc, gc)
			}
			compared++
		})
	}
	t.Logf("%d local submissions compared with Postfix", compared)
}
