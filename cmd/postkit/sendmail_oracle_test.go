package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// The same submissions through Postfix's sendmail (into a private
// instance with pickup, every message held by header_checks =
// static:HOLD and read back with postcat) and through postkit's sendmail,
// pickup and cleanup: the same envelope sender, recipients and message
// content, once queue IDs and dates are masked.
func TestSendmailOracle(t *testing.T) {
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: "myorigin = origin.test\nheader_checks = static:HOLD\n"})
	p.EnablePickup(t)
	bin := buildPostkit(t)
	s := startSMSystem(t, bin, "myhostname = mx.oracle.test\nmydomain = oracle.test\nmyorigin = origin.test\n")

	body := "Subject: s\nTo: To One <to1@example.net>, to2\nCc: cc@example.net\nBcc: hidden@example.net\n\nline 1\n.\n..\nline 2\n"
	tests := []struct {
		name  string
		stdin string
		args  []string
	}{
		{"plain", "Subject: hi\nTo: x@example.net\n\nbody\n", []string{"bob@example.net"}},
		{"dot ends input", body, []string{"bob@example.net"}},
		{"-i", body, []string{"-i", "bob@example.net"}},
		{"-oi", body, []string{"-oi", "bob@example.net"}},
		{"CRLF", strings.ReplaceAll(body, "\n", "\r\n"), []string{"bob@example.net"}},
		{"CRLF -i", strings.ReplaceAll(body, "\n", "\r\n"), []string{"-i", "bob@example.net"}},
		{"-t", body, []string{"-t"}},
		{"-t and argument", body, []string{"-t", "extra@example.net"}},
		{"-t Resent", "Resent-To: r1@example.net\nResent-Cc: r2\nTo: notme@example.net\nSubject: r\n\nx\n", []string{"-t"}},
		{"-f -F", "Subject: f\n\nx\n", []string{"-f", "Joe <joe@example.org>", "-F", "Joe Q. Public", "a@example.net, b@example.net"}},
		{"-F with From", "From: me@example.org\nSubject: f\n\nx\n", []string{"-F", "Full Name", "a@example.net"}},
		{"-F plain", "Subject: f\n\nx\n", []string{"-F", "Full Name", "a@example.net"}},
		{"-fsender", "Subject: f\n\nx\n", []string{"-fjoe", "a@example.net"}},
		{"-r", "Subject: f\n\nx\n", []string{"-r", "other@example.org", "a@example.net"}},
		{"null sender", "Subject: n\n\nx\n", []string{"-f", "<>", "a@example.net"}},
		{"unqualified", "Subject: u\n\nx\n", []string{"bob"}},
		{"name in argument", "Subject: u\n\nx\n", []string{"Bob Smith <bob@example.net>"}},
		{"empty message", "", []string{"a@example.net"}},
		{"no headers", "just text\nno colon here\n", []string{"a@example.net"}},
		{"From_ lines", "From me@x Mon Jan  1 00:00:00 2024\n>From again\nSubject: m\n\nx\n", []string{"a@example.net"}},
		{"no final newline", "Subject: e\n\nlast", []string{"a@example.net"}},
		{"final dot without newline", "Subject: e\n\nlast\n.", []string{"a@example.net"}},
		{"bare CR", "Subject: c\n\na\rb\nc\r\r\n", []string{"a@example.net"}},
		{"ignored options", "Subject: o\n\nx\n", []string{"-oem", "-odb", "-oQ/tmp", "-m", "-U", "-L", "label", "-h", "5", "-e", "x", "-Ac", "a@example.net"}},
		{"options after recipient", "Subject: o\n\nx\n", []string{"a@example.net", "-t"}},
		{"--", "Subject: o\n\nx\n", []string{"--", "a@example.net"}},
		{"long line", "Subject: l\n\n" + strings.Repeat("x", 5000) + "\n.\n", []string{"a@example.net"}},
		{"-bs", "EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<c@example.net>\r\nRCPT TO:<d>\r\nDATA\r\nSubject: bs\r\n\r\nbody\r\n..dot\r\n.\r\nQUIT\r\n", []string{"-bs"}},
		{"-bs one recipient HELO", "HELO client.test\r\nMAIL FROM:<>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n\r\nbody\r\n.\r\nQUIT\r\n", []string{"-bs"}},
	}
	t.Run("errors", func(t *testing.T) { smOracleErrors(t, p, s) })
	holdCount := func() int { return strings.Count(p.Log(), ": hold: ") }
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := holdCount()
			pres := p.Sendmail(t, []byte(tc.stdin), tc.args...)
			if pres.Code != 0 {
				t.Fatalf("Postfix's sendmail: exit %d, %s", pres.Code, pres.Stderr)
			}
			var id string
			for deadline := time.Now().Add(20 * time.Second); ; {
				if holdCount() > before {
					lines := strings.Split(p.Log(), "\n")
					n := 0
					for _, l := range lines {
						if strings.Contains(l, ": hold: ") {
							n++
							if n == before+1 {
								id = strings.TrimSuffix(strings.Fields(strings.SplitN(l, "]: ", 2)[1])[0], ":")
							}
						}
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Postfix did not queue the message\n%s", p.Log())
				}
				time.Sleep(10 * time.Millisecond)
			}
			// cleanup logs "hold" while it reads the headers; the file
			// reaches the hold queue when it is done.
			var pc oracle.Result
			for deadline := time.Now().Add(10 * time.Second); ; {
				pc = p.Postcat(t, "-q", id)
				if pc.Code == 0 && strings.Contains(string(pc.Stdout), "*** MESSAGE FILE END") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("postcat -q %s: exit %d\n%s%s", id, pc.Code, pc.Stdout, pc.Stderr)
				}
				time.Sleep(10 * time.Millisecond)
			}
			want := postcatView(t, string(pc.Stdout))

			res := s.sendmail(t, tc.stdin, tc.args...)
			if res.code != 0 {
				t.Fatalf("postkit sendmail: exit %d, %s", res.code, res.stderr)
			}
			// The -bs dialogue, with the queue IDs masked.
			if pout, out := smQueuedRE.ReplaceAllString(string(pres.Stdout), "queued as ID"), smQueuedRE.ReplaceAllString(res.stdout, "queued as ID"); pout != out {
				t.Errorf("standard output differs:\n%s", oracle.Diff(pout, out))
			}
			env, content := s.next(t)
			var rcpts []string
			for _, r := range env.Recipients {
				rcpts = append(rcpts, r.Addr)
			}
			got := smView(env.Sender, rcpts, strings.ReplaceAll(content, "\r\n", "\n"))
			// pickup's log line: "QUEUEID: uid=0 from=<root>".
			pline := p.WaitLog(t, 5*time.Second, "postfix/pickup[", id+": uid=")
			want = "log: " + pline[strings.Index(pline, id+": ")+len(id)+2:] + "\n" + want
			gline := regexp.MustCompile(`msg="` + env.QueueID + `: (uid=[^"]*)"`).FindStringSubmatch(s.log.String())
			if gline == nil {
				t.Fatalf("no pickup log line for %s:\n%s", env.QueueID, s.log)
			}
			got = "log: " + gline[1] + "\n" + got
			if !strings.Contains(want, "\nReceived: by mx.oracle.test (Postfix, from userid ") {
				t.Fatalf("postcat gave no message:\n%s", want)
			}
			if d := oracle.Diff(want, got); d != "" {
				t.Errorf("postkit differs from Postfix:\n%s\n--- Postfix:\n%s\n--- postkit:\n%s", d, want, got)
			}
		})
	}
}

// postcatView extracts sender, recipients and content from "postcat -q"
// output.
func postcatView(t *testing.T, out string) string {
	t.Helper()
	var sender string
	var rcpts []string
	var content strings.Builder
	inContent := false
	for _, l := range strings.SplitAfter(out, "\n") {
		switch {
		case strings.HasPrefix(l, "*** MESSAGE CONTENTS"):
			inContent = true
			continue
		case strings.HasPrefix(l, "*** "):
			inContent = false
			continue
		}
		if inContent {
			content.WriteString(l)
			continue
		}
		if v, ok := strings.CutPrefix(l, "sender: "); ok {
			sender = strings.TrimSuffix(v, "\n")
		}
		if v, ok := strings.CutPrefix(l, "recipient: "); ok {
			rcpts = append(rcpts, strings.TrimSuffix(v, "\n"))
		}
	}
	return smView(sender, rcpts, content.String())
}

var (
	smDateRE   = regexp.MustCompile(`(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [ 0-9]\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(\w+\)`)
	smIDRE     = regexp.MustCompile(`\bid [0-9A-Za-z]{10,}\b`)
	smMsgIDRE  = regexp.MustCompile(`<\d{14}\.[0-9A-Za-z]+@`)
	smQueuedRE = regexp.MustCompile(`queued as [0-9A-Za-z]+`)
)

// smView is what the two sides are compared on. Recipients are sorted:
// the order of the queue file's records is not something a user sees.
func smView(sender string, rcpts []string, content string) string {
	sort.Strings(rcpts)
	content = smDateRE.ReplaceAllString(content, "DATE")
	content = smIDRE.ReplaceAllString(content, "id QUEUEID")
	content = smMsgIDRE.ReplaceAllString(content, "<TIMESTAMP.QUEUEID@")
	return "sender: " + sender + "\nrecipients: " + strings.Join(rcpts, " ") + "\n" + content
}

// smOracleErrors compares the errors and exit codes of Postfix's sendmail
// for bad command lines and messages without recipients.
func smOracleErrors(t *testing.T, p *oracle.Postfix, s *smSystem) {
	tests := [][]string{
		{},
		{"-t"},
		{"-Z", "a@example.net"},
		{"-Y", "-Z", "a@example.net"},
		{"-f"},
		{"-B", "x", "a@example.net"},
		{"-bz", "a@example.net"},
		{"-n", "a@example.net"},
		{"-X", "/tmp/log", "a@example.net"},
		{"-bs", "a@example.net"},
		{"-t", "-bs"},
		{"-qX"},
		{"-qR"},
		{"-oA"},
		{"-N", "bogus", "-bh"},
		{"-R", "bogus", "-bh"},
		{"-bh"},
		{"-bH"},
		{"-q15m"},
	}
	for _, args := range tests {
		want := p.Sendmail(t, []byte("Subject: x\n\n"), args...)
		got := s.sendmail(t, "Subject: x\n\n", args...)
		if got.code != want.Code || got.stderr != string(want.Stderr) || got.stdout != string(want.Stdout) {
			t.Errorf("sendmail %q:\npostkit: exit %d stdout %q stderr %q\nPostfix: exit %d stdout %q stderr %q",
				args, got.code, got.stdout, got.stderr, want.Code, want.Stdout, want.Stderr)
		}
	}
}

// authorized_submit_users refuses as Postfix's sendmail does, before
// anything is written.
func TestSendmailOracleSubmitACL(t *testing.T) {
	sendmail := oracle.Require(t, "sendmail")
	bin := buildPostkit(t)
	// (inline:{...} tables are left out: maps.MatchList splits them at
	// the spaces inside the braces.)
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("other yes\nnobody yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	oracle.Backdate(t, users)
	for _, acl := range []string{"!root, static:anyone", "nobody", "texthash:" + users} {
		queue := t.TempDir()
		if err := os.Mkdir(filepath.Join(queue, "maildrop"), 0o755); err != nil {
			t.Fatal(err)
		}
		dir := oracle.ConfigDir(t, "queue_directory = "+queue+"\nauthorized_submit_users = "+acl+"\n")
		want, err := oracle.Exec(sendmail, []byte("Subject: x\n\n"), "-C", dir, "a@example.net")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "sendmail", "-C", dir, "a@example.net")
		cmd.Stdin = strings.NewReader("Subject: x\n\n")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err = cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if code != want.Code || stderr.String() != string(want.Stderr) || code == 0 {
			t.Errorf("authorized_submit_users = %s: postkit exit %d %q, Postfix exit %d %q", acl, code, stderr.String(), want.Code, want.Stderr)
		}
		if ents, _ := os.ReadDir(filepath.Join(queue, "maildrop")); len(ents) != 0 {
			t.Errorf("authorized_submit_users = %s: %d files left in the maildrop", acl, len(ents))
		}
	}
}
