package mailbox

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// postfixBody goes through SMTP to Postfix's local(8): lines that mboxo
// quoting must and must not touch.
const postfixBody = "Subject: differential\r\n\r\nFrom the start of a line\r\n>From already quoted\r\n From indented\r\nFrom\r\nFromage\r\n\r\nFrom after an empty line\r\nlast\r\n"

// sendToPostfix submits one message and waits for its delivery.
func sendToPostfix(t *testing.T, p *oracle.Postfix, sender, logText string) {
	t.Helper()
	before := countLines(p.Log(), "to=<nobody@localhost>", logText)
	s := p.Session(t)
	for _, c := range []string{"EHLO client.example.com", "MAIL FROM:<" + sender + ">", "RCPT TO:<nobody@localhost>", "DATA"} {
		if r := s.Cmd(c); r.Code >= 400 {
			t.Fatalf("%s: %v", c, r)
		}
	}
	if r := s.Message(strings.ReplaceAll(postfixBody, "\r\n", "\n")); r.Code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	s.Close()
	// Wait for this message's line: an earlier delivery's line matches the
	// same texts, so count them.
	deadline := time.Now().Add(60 * time.Second)
	for countLines(p.Log(), "to=<nobody@localhost>", logText) < before+1 {
		if time.Now().After(deadline) {
			t.Fatalf("no new log line with %q:\n%s", logText, p.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countLines(log string, substrs ...string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, s := range substrs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

// Postfix's local(8) delivering to Maildir and mbox is the reference for
// file names and mbox bytes: postkit delivering the same content gives the
// same file once the date is taken from Postfix's From_ line.
func TestPostfixLocalDifferential(t *testing.T) {
	if os.Geteuid() != 0 {
		oracle.Unavailable(t, "Postfix's local(8) delivery to the nobody user needs root")
	}
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: "mydestination = localhost\n" +
		"local_transport = local\n" +
		"local_recipient_maps =\n" +
		"mail_spool_directory = $queue_directory/../maildirs/\n"})
	for _, d := range []string{"maildirs", "mboxes"} {
		if err := os.Mkdir(filepath.Join(p.Dir, d), 0o1777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(p.Dir, d), 0o1777)
	}
	host, _ := os.Hostname()

	// Maildir: Postfix's name is SECONDS.VdevIinoMusec.HOST, as ours.
	sendToPostfix(t, p, "alice@example.com", "delivered to maildir")
	pdir := filepath.Join(p.Dir, "maildirs", "nobody")
	names, err := readNames(filepath.Join(pdir, "new"))
	if err != nil || len(names) != 1 {
		t.Fatalf("Postfix's new/: %v %v", names, err)
	}
	pname := names[0]
	pm := postfixName.FindStringSubmatch(pname)
	if pm == nil || pm[5] != host {
		t.Fatalf("Postfix named its file %q; our pattern or host %q does not match", pname, host)
	}
	var st syscall.Stat_t
	syscall.Stat(filepath.Join(pdir, "new", pname), &st)
	content, _ := os.ReadFile(filepath.Join(pdir, "new", pname))
	ours, err := DeliverMaildir(context.Background(), filepath.Join(t.TempDir(), "Maildir"), strings.NewReader(string(content)), MaildirOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	om := postfixName.FindStringSubmatch(filepath.Base(ours))
	var ost syscall.Stat_t
	syscall.Stat(ours, &ost)
	shape := regexp.MustCompile(`[0-9a-f]+`)
	if shape.ReplaceAllString(filepath.Base(ours), "N") != shape.ReplaceAllString(pname, "N") || om[5] != pm[5] {
		t.Errorf("our name %q differs in form from Postfix's %q", filepath.Base(ours), pname)
	}
	if pm[2] != hex(uint64(st.Dev)) || pm[3] != hex(st.Ino) || om[2] != hex(uint64(ost.Dev)) {
		t.Errorf("device field: Postfix %s (file dev %x), ours %s (dev %x)", pm[2], st.Dev, om[2], ost.Dev)
	}
	if !strings.Contains(string(content), "\nFrom the start of a line\n") {
		t.Errorf("Postfix's maildir file quoted or changed the body: %q", content)
	}

	// mbox: the same bytes, From_ line and quoting included.
	p.Reconfigure(t, "mydestination = localhost\nlocal_transport = local\nlocal_recipient_maps =\n"+
		"mail_spool_directory = $queue_directory/../mboxes\n", nil)
	sendToPostfix(t, p, "alice@example.com", "delivered to mailbox")
	sendToPostfix(t, p, "", "delivered to mailbox")
	pmbox := filepath.Join(p.Dir, "mboxes", "nobody")
	pdata, err := os.ReadFile(pmbox)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(pmbox)
	defer f.Close()
	msgs, err := ScanMbox(f)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("Postfix's mbox: %d messages, %v", len(msgs), err)
	}
	omb := filepath.Join(t.TempDir(), "mbox")
	for i, m := range msgs {
		sender, date, ok := strings.Cut(m.From, "  ")
		if !ok {
			t.Fatalf("Postfix's From_ line %q", m.From)
		}
		when, err := time.ParseInLocation("Mon Jan _2 15:04:05 2006", date, time.Local)
		if err != nil {
			t.Fatalf("Postfix's From_ date %q: %v", date, err)
		}
		if sender == "MAILER-DAEMON" {
			sender = ""
		}
		if (i == 1) != (sender == "") {
			t.Errorf("message %d From_ sender %q", i, m.From)
		}
		if err := DeliverMbox(context.Background(), omb, sender, m.Reader(f), MboxOptions{Create: true, Time: when}); err != nil {
			t.Fatal(err)
		}
	}
	odata, _ := os.ReadFile(omb)
	if d := oracle.Diff(string(pdata), string(odata)); d != "" {
		t.Errorf("our mbox differs from Postfix's:\n%s", d)
	}
	// Postfix quoted exactly the lines we expect.
	sc := bufio.NewScanner(strings.NewReader(string(pdata)))
	var quoted []string
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), ">From") {
			quoted = append(quoted, sc.Text())
		}
	}
	if len(quoted) != 6 {
		t.Errorf("Postfix's >From lines: %q", quoted)
	}
}

func hex(v uint64) string { return strconv.FormatUint(v, 16) }
