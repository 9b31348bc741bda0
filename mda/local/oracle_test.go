package local

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/queue"
)

// oracleAliases is the aliases file both Postfix and postkit get; {OUT}
// is each side's output directory.
const oracleAliases = `mb: {OUT}/mbox
md: {OUT}/maildir/
cmd: "|cat > {OUT}/cmd.out"
tempfail: "|exit 75"
nouser: "|exit 67"
died: "|echo oops; exit 1"
dsnout: "|echo 4.2.2 mailbox is full; exit 1"
multi: "|printf 'line one\\nline two\\n'; exit 69"
loopa: loopb
loopb: loopa
inclmissing: :include:/nonexistent/list
inclfile: :include:{OUT}/inc
inclfifo: :include:{OUT}/fifo
devnull: /dev/null
`

// oracleMessage has lines an mbox must quote and lines it must not.
const oracleMessage = "From: Alice <alice@example.org>\nTo: root@localhost\nSubject: oracle local test\n\n" +
	"Body line\nFrom the start of a line\n>From already quoted\n From with a space\nFrom\n..leading dot\nlast line\n"

// TestMatchesPostfix delivers the same message through a private
// Postfix's local(8) and through the agent, to an mbox in the spool, to
// alias /file (mbox) and /dir/ (Maildir) targets and to commands, and to
// recipients that fail in each of local(8)'s ways; it compares the files
// byte for byte (From_ dates normalized) and each recipient's dsn, status
// and reason text with Postfix's log line.
func TestMatchesPostfix(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		oracle.Unavailable(t, "local(8) delivery in the oracle needs root")
	}
	pdir := openDir(t)
	pout := filepath.Join(pdir, "out")
	mkdirMode(t, pout, 0o777)
	mkdirMode(t, filepath.Join(pdir, "mail"), 0o755)
	writeFile(t, filepath.Join(pout, "inc"), pout+"/incfile\n", 0o644)
	// An :include: file that is a FIFO: refused, and nothing waits for a
	// writer.
	if err := syscall.Mkfifo(filepath.Join(pout, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main: "mydestination = localhost, $myhostname\nlocal_recipient_maps =\n" +
			"alias_maps = hash:$config_directory/aliases\nalias_database = hash:$config_directory/aliases\n" +
			"mail_spool_directory = " + pdir + "/mail\n",
		Files: []oracle.File{{Name: "aliases", Data: strings.ReplaceAll(oracleAliases, "{OUT}", pout)}},
	})
	if r := oracle.Run(t, nil, "postalias", "-c", p.ConfigDir, "hash:"+p.ConfigDir+"/aliases"); r.Code != 0 {
		t.Fatalf("postalias: %+v", r)
	}
	rcpts := []string{"root", "mb", "md", "cmd", "tempfail", "nouser", "died", "dsnout", "multi",
		"nosuchuser", "loopa", "inclmissing", "inclfile", "inclfifo", "devnull", "postmaster"}
	send := func(msg string, rcpts ...string) {
		c := p.Session(t)
		c.Cmd("EHLO client.test")
		c.Cmd("MAIL FROM:<alice@example.org>")
		for _, r := range rcpts {
			if rep := c.Cmd("RCPT TO:<" + r + "@localhost>"); !strings.HasPrefix(rep.String(), "250") {
				t.Fatalf("RCPT %s: %s", r, rep)
			}
		}
		c.Cmd("DATA")
		if rep := c.Message(msg); !strings.HasPrefix(rep.String(), "250") {
			t.Fatalf("DATA: %s", rep)
		}
		c.Close()
	}
	send(oracleMessage, rcpts...)
	logRE := regexp.MustCompile(`: to=<([^>]+)>, (?:orig_to=<[^>]+>, )?relay=(\S+), delay=\S+, delays=\S+, dsn=(\S+), status=(\S+) \((.*)\)$`)
	postfix := map[string]string{}
	for _, r := range rcpts {
		line := p.WaitLog(t, 60*time.Second, "to=<"+r+"@localhost>", "status=")
		m := logRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("log line %q", line)
		}
		postfix[r] = fmt.Sprintf("relay=%s, dsn=%s, status=%s (%s)", m[2], m[3], m[4], strings.ReplaceAll(m[5], pdir, "DIR"))
	}
	// The content Postfix's local(8) was handed: its Maildir copy
	// without the three delivery headers.
	mdFiles := dirFiles(t, filepath.Join(pout, "maildir/new"))
	if len(mdFiles) != 1 {
		t.Fatalf("postfix maildir has %d files", len(mdFiles))
	}
	pmd := read(t, mdFiles[0])
	hdrs := "Return-Path: <alice@example.org>\nX-Original-To: md@localhost\nDelivered-To: md@localhost\n"
	if !strings.HasPrefix(pmd, hdrs) {
		t.Fatalf("postfix maildir file does not start with the delivery headers:\n%s", pmd)
	}
	queued := strings.ReplaceAll(strings.TrimPrefix(pmd, hdrs), "\n", "\r\n")

	// The same through postkit.
	kdir := openDir(t)
	kout := filepath.Join(kdir, "out")
	mkdirMode(t, kout, 0o777)
	mkdirMode(t, filepath.Join(kdir, "mail"), 0o755)
	writeFile(t, filepath.Join(kout, "inc"), kout+"/incfile\n", 0o644)
	if err := syscall.Mkfifo(filepath.Join(kout, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(kdir, "aliases"), strings.ReplaceAll(oracleAliases, "{OUT}", kout), 0o644)
	host, _ := os.Hostname()
	a := oracleAgent(t, kdir, "", host)
	words := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	for _, r := range rcpts {
		res := a.Deliver(context.Background(), oracleDelivery(queued, r+"@localhost"))[0]
		got := fmt.Sprintf("relay=%s, dsn=%s, status=%s (%s)", res.Relay, res.DSN, words[res.Outcome], strings.ReplaceAll(res.Reason, kdir, "DIR"))
		if got != postfix[r] {
			t.Errorf("%s:\npostfix: %s\npostkit: %s", r, postfix[r], got)
		}
	}

	// Files, byte for byte.
	norm := regexp.MustCompile(`(?m)^From (\S+)  [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}$`)
	compare := func(what, pf, pk string) {
		t.Helper()
		a, b := norm.ReplaceAllString(read(t, pf), "From $1  DATE"), norm.ReplaceAllString(read(t, pk), "From $1  DATE")
		if a != b {
			t.Errorf("%s differs:\n%s", what, oracle.Diff(a, b))
		}
	}
	compare("spool mbox", filepath.Join(pdir, "mail/root"), filepath.Join(kdir, "mail/root"))
	compare("alias /file mbox", filepath.Join(pout, "mbox"), filepath.Join(kout, "mbox"))
	compare("command input", filepath.Join(pout, "cmd.out"), filepath.Join(kout, "cmd.out"))
	kmd := dirFiles(t, filepath.Join(kout, "maildir/new"))
	if len(kmd) != 1 {
		t.Fatalf("postkit maildir has %d files", len(kmd))
	}
	compare("alias Maildir file", mdFiles[0], kmd[0])
	nameRE := regexp.MustCompile(`^\d+\.V[0-9a-f]+I[0-9a-f]+M\d+\.` + regexp.QuoteMeta(host) + `$`)
	for _, f := range []string{mdFiles[0], kmd[0]} {
		if !nameRE.MatchString(filepath.Base(f)) {
			t.Errorf("Maildir name %q does not have Postfix's form", filepath.Base(f))
		}
	}
	for _, f := range []string{"mail/root", "out/mbox", "out/cmd.out"} {
		sameOwnerMode(t, filepath.Join(pdir, f), filepath.Join(kdir, f))
	}
	sameOwnerMode(t, mdFiles[0], kmd[0])
	if t.Failed() {
		return
	}

	// A message that was already delivered to a recipient loops.
	send("Delivered-To: root@localhost\n"+oracleMessage, "root")
	line := p.WaitLog(t, 60*time.Second, "to=<root@localhost>", "dsn=5.4.6")
	m := logRE.FindStringSubmatch(line)
	res := a.Deliver(context.Background(), oracleDelivery("Delivered-To: root@localhost\r\n"+queued, "ROOT@localhost"))[0]
	got := fmt.Sprintf("dsn=%s, status=%s (%s)", res.DSN, words[res.Outcome], strings.ReplaceAll(res.Reason, "ROOT", "root"))
	if want := fmt.Sprintf("dsn=%s, status=%s (%s)", m[3], m[4], m[5]); got != want {
		t.Errorf("loop: postfix %s, postkit %s", want, got)
	}
}

// TestMatchesPostfixMaildirSpool compares user mailbox delivery to a
// Maildir under mail_spool_directory (the name ends in '/').
func TestMatchesPostfixMaildirSpool(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		oracle.Unavailable(t, "local(8) delivery in the oracle needs root")
	}
	pdir := openDir(t)
	mkdirMode(t, filepath.Join(pdir, "mail"), 0o755)
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main: "mydestination = localhost\nlocal_recipient_maps =\nmail_spool_directory = " + pdir + "/mail/\n",
	})
	c := p.Session(t)
	c.Cmd("EHLO client.test")
	c.Cmd("MAIL FROM:<>")
	c.Cmd("RCPT TO:<Root@localhost>")
	c.Cmd("DATA")
	c.Message(oracleMessage)
	c.Close()
	line := p.WaitLog(t, 60*time.Second, "to=<Root@localhost>", "status=")
	if !strings.Contains(line, "status=sent (delivered to maildir)") {
		t.Fatalf("postfix: %s", line)
	}
	pf := dirFiles(t, filepath.Join(pdir, "mail/root/new"))
	if len(pf) != 1 {
		t.Fatalf("%d files", len(pf))
	}
	pmd := read(t, pf[0])
	hdrs := "Return-Path: <>\nX-Original-To: Root@localhost\nDelivered-To: Root@localhost\n"
	if !strings.HasPrefix(pmd, hdrs) {
		t.Fatalf("postfix file:\n%s", pmd)
	}
	queued := strings.ReplaceAll(strings.TrimPrefix(pmd, hdrs), "\n", "\r\n")

	kdir := openDir(t)
	mkdirMode(t, filepath.Join(kdir, "mail"), 0o755)
	host, _ := os.Hostname()
	a := oracleAgent(t, kdir, "mail_spool_directory = "+kdir+"/mail/\n", host)
	d := oracleDelivery(queued, "Root@localhost")
	d.Envelope.Sender = ""
	res := a.Deliver(context.Background(), d)[0]
	if res.Outcome != queue.Delivered || res.Reason != "delivered to maildir" {
		t.Fatalf("postkit: %+v", res)
	}
	kf := dirFiles(t, filepath.Join(kdir, "mail/root/new"))
	if len(kf) != 1 {
		t.Fatalf("%d files", len(kf))
	}
	if got := read(t, kf[0]); got != pmd {
		t.Errorf("maildir file differs:\n%s", oracle.Diff(pmd, got))
	}
	for _, sub := range []string{"", "new", "cur", "tmp"} {
		sameOwnerMode(t, filepath.Join(pdir, "mail/root", sub), filepath.Join(kdir, "mail/root", sub))
	}
}

// oracleAgent is an agent configured like the oracle instance, with the
// system's users.
func oracleAgent(t *testing.T, dir, extra, host string) *Agent {
	t.Helper()
	main := "myhostname = mx.oracle.test\nmydestination = localhost, $myhostname\n" +
		"alias_maps = hash:" + dir + "/aliases\nmail_spool_directory = " + dir + "/mail\n" + extra
	if _, err := os.Stat(dir + "/aliases"); err != nil {
		writeFile(t, dir+"/aliases", "", 0o644)
	}
	cfg, err := config.Parse("main.cf", strings.NewReader(main))
	if err != nil {
		t.Fatal(err)
	}
	a, err := FromConfig(context.Background(), cfg, Options{Hostname: host, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func oracleDelivery(content, rcpt string) *queue.Delivery {
	env := &cleanup.Envelope{QueueID: "4ABCDEF", Sender: "alice@example.org", Arrival: time.Now(), Size: int64(len(content))}
	cr := cleanup.Recipient{Addr: rcpt, Original: rcpt}
	env.Recipients = []cleanup.Recipient{cr}
	return &queue.Delivery{QueueID: env.QueueID, Envelope: env, Transport: "local", Nexthop: "mx.oracle.test",
		Recipients: []queue.Recipient{{Addr: rcpt, Recipient: cr}},
		Open:       func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(content)), nil }}
}

// openDir is a scratch directory that default_privs (nobody) can reach.
func openDir(t *testing.T) string {
	d := t.TempDir()
	os.Chmod(filepath.Dir(d), 0o755)
	os.Chmod(d, 0o755)
	return d
}

func mkdirMode(t *testing.T, d string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(d, mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, mode)
}

func dirFiles(t *testing.T, d string) []string {
	t.Helper()
	ents, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(d, e.Name()))
	}
	return out
}

// sameOwnerMode checks that postkit created a file with the owner and mode
// Postfix gave it.
func sameOwnerMode(t *testing.T, pf, pk string) {
	t.Helper()
	a, err1 := os.Stat(pf)
	b, err2 := os.Stat(pk)
	if err1 != nil || err2 != nil {
		t.Errorf("stat: %v %v", err1, err2)
		return
	}
	ua, ub := ownerOf(a), ownerOf(b)
	if a.Mode() != b.Mode() || ua != ub {
		t.Errorf("%s: postfix %v %s, postkit %v %s", filepath.Base(pk), a.Mode(), ua, b.Mode(), ub)
	}
}

// TestMatchesPostfixLimits compares mailbox_size_limit failures,
// recipient_delimiter extensions and luser_relay with Postfix: messages go
// one by one to root+N@localhost and to unknown users (relayed to root)
// until the mbox is full. always_bcc keeps a Maildir copy of each message,
// which gives postkit the exact content Postfix's local(8) got.
func TestMatchesPostfixLimits(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		oracle.Unavailable(t, "local(8) delivery in the oracle needs root")
	}
	const limits = "mydestination = localhost, $myhostname\nmessage_size_limit = 1800\nmailbox_size_limit = 1800\n" +
		"recipient_delimiter = +\nluser_relay = root+$user\n"
	pdir := openDir(t)
	mkdirMode(t, filepath.Join(pdir, "mail"), 0o755)
	mkdirMode(t, filepath.Join(pdir, "capture"), 0o777)
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main: "local_recipient_maps =\nmail_spool_directory = " + pdir + "/mail\n" + limits +
			"always_bcc = capture@localhost\nalias_maps = hash:$config_directory/aliases\nalias_database = hash:$config_directory/aliases\n",
		Files: []oracle.File{{Name: "aliases", Data: "capture: " + pdir + "/capture/\n"}},
	})
	if r := oracle.Run(t, nil, "postalias", "-c", p.ConfigDir, "hash:"+p.ConfigDir+"/aliases"); r.Code != 0 {
		t.Fatalf("postalias: %+v", r)
	}
	kdir := openDir(t)
	mkdirMode(t, filepath.Join(kdir, "mail"), 0o755)
	host, _ := os.Hostname()
	a := oracleAgent(t, kdir, limits, host)
	logRE := regexp.MustCompile(`: to=<([^>]+)>, (?:orig_to=<[^>]+>, )?relay=(\S+), delay=\S+, delays=\S+, dsn=(\S+), status=(\S+) \((.*)\)$`)
	words := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	failed := 0
	for i := 1; i <= 8 && failed < 2; i++ {
		rcpt := fmt.Sprintf("root+%d@localhost", i)
		if i%3 == 0 {
			rcpt = fmt.Sprintf("nosuch%d@localhost", i)
		}
		c := p.Session(t)
		c.Cmd("EHLO client.test")
		c.Cmd("MAIL FROM:<alice@example.org>")
		c.Cmd("RCPT TO:<" + rcpt + ">")
		c.Cmd("DATA")
		c.Message(oracleMessage)
		c.Close()
		line := p.WaitLog(t, 60*time.Second, "to=<"+rcpt+">", "status=")
		m := logRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("log line %q", line)
		}
		want := fmt.Sprintf("dsn=%s, status=%s (%s)", m[3], m[4], strings.ReplaceAll(m[5], pdir, "DIR"))
		qid := regexp.MustCompile(`([0-9A-F]+): to=<`).FindStringSubmatch(line)
		if qid == nil {
			t.Fatalf("no queue ID in %q", line)
		}
		p.WaitLog(t, 60*time.Second, qid[1]+": to=<capture@localhost>", "status=sent")
		files := dirFiles(t, filepath.Join(pdir, "capture/new"))
		if len(files) != i {
			t.Fatalf("%d captured copies after %d messages", len(files), i)
		}
		var queued string
		for _, f := range files {
			data := read(t, f)
			if !strings.Contains(data, "for <"+rcpt+">;") {
				continue
			}
			_, rest, ok := strings.Cut(data, "\nDelivered-To: capture@localhost\n")
			if !ok {
				t.Fatalf("captured copy:\n%s", data)
			}
			queued = strings.ReplaceAll(rest, "\n", "\r\n")
		}
		if queued == "" {
			t.Fatalf("no captured copy for %s", rcpt)
		}
		res := a.Deliver(context.Background(), oracleDelivery(queued, rcpt))[0]
		got := fmt.Sprintf("dsn=%s, status=%s (%s)", res.DSN, words[res.Outcome], strings.ReplaceAll(res.Reason, kdir, "DIR"))
		t.Logf("%s: postfix %s", rcpt, want)
		if got != want {
			t.Errorf("%s:\npostfix: %s\npostkit: %s", rcpt, want, got)
		}
		if m[4] == "bounced" {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("the mailbox never filled up")
	}
	norm := regexp.MustCompile(`(?m)^From (\S+)  [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}$`)
	pf := norm.ReplaceAllString(read(t, filepath.Join(pdir, "mail/root")), "From $1  DATE")
	pk := norm.ReplaceAllString(read(t, filepath.Join(kdir, "mail/root")), "From $1  DATE")
	if pf != pk {
		t.Errorf("mbox differs:\n%s", oracle.Diff(pf, pk))
	}
}

// TestMatchesPostfixMailboxStates compares deliveries to a spool mbox in
// states that make them fail: a dotlock another process holds, a
// directory where the mailbox should be, a mailbox owned by another user.
func TestMatchesPostfixMailboxStates(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		oracle.Unavailable(t, "local(8) delivery in the oracle needs root")
	}
	const main = "mydestination = localhost\nrecipient_delimiter = +\ndeliver_lock_attempts = 2\ndeliver_lock_delay = 1s\n"
	states := []struct {
		name    string
		prepare func(mail string)
	}{
		{"dotlock held", func(mail string) { writeFile(t, mail+"/root.lock", "", 0o600) }},
		{"directory", func(mail string) { mkdirMode(t, mail+"/root", 0o700) }},
		{"other owner", func(mail string) {
			writeFile(t, mail+"/root", "", 0o600)
			os.Chown(mail+"/root", 65534, 65534)
		}},
		{"hard link", func(mail string) {
			// A second name for the mailbox (a hard link attack):
			// Postfix's safe_open refuses it.
			writeFile(t, mail+"/root", "", 0o600)
			if err := os.Link(mail+"/root", mail+"/second"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	pdir := openDir(t)
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main + "local_recipient_maps =\n"})
	words := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	for i, st := range states {
		pmail := filepath.Join(pdir, fmt.Sprintf("mail%d", i))
		mkdirMode(t, pmail, 0o755)
		st.prepare(pmail)
		p.Reconfigure(t, main+"local_recipient_maps =\nmail_spool_directory = "+pmail+"\n", nil)
		c := p.Session(t)
		c.Cmd("EHLO client.test")
		c.Cmd("MAIL FROM:<alice@example.org>")
		rcpt := fmt.Sprintf("root+%d@localhost", i)
		c.Cmd("RCPT TO:<" + rcpt + ">")
		c.Cmd("DATA")
		c.Message(oracleMessage)
		c.Close()
		line := p.WaitLog(t, 60*time.Second, "to=<"+rcpt+">", "status=")
		m := regexp.MustCompile(`dsn=(\S+), status=(\S+) \((.*)\)$`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("log line %q", line)
		}
		kdir := openDir(t)
		kmail := filepath.Join(kdir, "mail")
		mkdirMode(t, kmail, 0o755)
		st.prepare(kmail)
		a := oracleAgent(t, kdir, main, "")
		res := a.Deliver(context.Background(), oracleDelivery("Subject: x\r\n\r\nx\r\n", rcpt))[0]
		got := fmt.Sprintf("dsn=%s, status=%s (%s)", res.DSN, words[res.Outcome], strings.ReplaceAll(res.Reason, kmail, "MAIL"))
		if want := fmt.Sprintf("dsn=%s, status=%s (%s)", m[1], m[2], strings.ReplaceAll(m[3], pmail, "MAIL")); got != want {
			t.Errorf("%s:\npostfix: %s\npostkit: %s", st.name, want, got)
		}
	}
}

// TestMatchesPostfixOwnerAlias compares a mailing list alias with an
// owner- companion: every member is resubmitted in one new message whose
// envelope sender is owner-LIST@$myorigin.
func TestMatchesPostfixOwnerAlias(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		oracle.Unavailable(t, "local(8) delivery in the oracle needs root")
	}
	const aliases = "olist: root, far@remote.example, root\nowner-olist: root\nplain: root, far@remote.example\n"
	const main = "mydestination = localhost, $myhostname\n"
	pdir := openDir(t)
	mkdirMode(t, filepath.Join(pdir, "mail"), 0o755)
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main: main + "local_recipient_maps =\nmail_spool_directory = " + pdir + "/mail\n" +
			"alias_maps = hash:$config_directory/aliases\nalias_database = hash:$config_directory/aliases\n",
		Files: []oracle.File{{Name: "aliases", Data: aliases}},
	})
	if r := oracle.Run(t, nil, "postalias", "-c", p.ConfigDir, "hash:"+p.ConfigDir+"/aliases"); r.Code != 0 {
		t.Fatalf("postalias: %+v", r)
	}
	kdir := openDir(t)
	mkdirMode(t, filepath.Join(kdir, "mail"), 0o755)
	writeFile(t, kdir+"/aliases", aliases, 0o644)
	a := oracleAgent(t, kdir, main, "")
	store, err := cleanup.OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cleanup.New(cleanup.Config{Hostname: "mx.oracle.test", Location: time.UTC, Logger: slog.New(slog.DiscardHandler)}, store)
	if err != nil {
		t.Fatal(err)
	}
	a.resub = mda.NewCleanupResubmitter(cl)
	for _, list := range []string{"olist", "plain"} {
		c := p.Session(t)
		c.Cmd("EHLO client.test")
		c.Cmd("MAIL FROM:<alice@example.org>")
		c.Cmd("RCPT TO:<" + list + "@localhost>")
		c.Cmd("DATA")
		c.Message(oracleMessage)
		c.Close()
		line := p.WaitLog(t, 60*time.Second, "to=<"+list+"@localhost>", "forwarded as ")
		id := regexp.MustCompile(`forwarded as ([0-9A-F]+)\)`).FindStringSubmatch(line)
		if id == nil {
			t.Fatalf("log line %q", line)
		}
		qline := p.WaitLog(t, 60*time.Second, id[1]+": from=<")
		pf := regexp.MustCompile(`from=<([^>]*)>, size=\d+, nrcpt=(\d+)`).FindStringSubmatch(qline)

		before, _ := store.List()
		res := a.Deliver(context.Background(), oracleDelivery("Subject: x\r\n\r\nx\r\n", list+"@localhost"))[0]
		if res.Outcome != queue.Delivered || res.DSN != "2.0.0" {
			t.Fatalf("%s: %+v", list, res)
		}
		after, _ := store.List()
		var env *cleanup.Envelope
		for _, id := range after {
			if !slices.Contains(before, id) {
				env, _, _ = store.Read(id)
			}
		}
		if env == nil {
			t.Fatalf("%s: nothing resubmitted", list)
		}
		if got := fmt.Sprintf("from=<%s>, nrcpt=%d", env.Sender, len(env.Recipients)); got != fmt.Sprintf("from=<%s>, nrcpt=%s", pf[1], pf[2]) {
			t.Errorf("%s: postfix resubmitted from=<%s>, nrcpt=%s; postkit %s", list, pf[1], pf[2], got)
		}
	}
}

// TestMatchesPostfixExtensionPropagation checks where an alias's forwarded
// copy goes with propagate_unmatched_extensions = alias.
func TestMatchesPostfixExtensionPropagation(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		oracle.Unavailable(t, "local(8) delivery in the oracle needs root")
	}
	const main = "mydestination = localhost\nrecipient_delimiter = +\npropagate_unmatched_extensions = alias\n"
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main:  main + "local_recipient_maps =\nalias_maps = hash:$config_directory/aliases\nalias_database = hash:$config_directory/aliases\n",
		Files: []oracle.File{{Name: "aliases", Data: "team: far@remote.example, near\n"}},
	})
	if r := oracle.Run(t, nil, "postalias", "-c", p.ConfigDir, "hash:"+p.ConfigDir+"/aliases"); r.Code != 0 {
		t.Fatalf("postalias: %+v", r)
	}
	c := p.Session(t)
	c.Cmd("EHLO client.test")
	c.Cmd("MAIL FROM:<alice@example.org>")
	c.Cmd("RCPT TO:<team+tag@localhost>")
	c.Cmd("DATA")
	c.Message(oracleMessage)
	c.Close()
	line := p.WaitLog(t, 60*time.Second, "to=<team+tag@localhost>", "forwarded as ")
	id := regexp.MustCompile(`forwarded as ([0-9A-F]+)\)`).FindStringSubmatch(line)
	if id == nil {
		t.Fatalf("log line %q", line)
	}
	var postfix []string
	for _, want := range []string{"remote.example", "mx.oracle.test"} {
		l := p.WaitLog(t, 60*time.Second, id[1]+": to=<", "@"+want+">")
		postfix = append(postfix, regexp.MustCompile(`to=<([^>]+)>`).FindStringSubmatch(l)[1])
	}

	kdir := openDir(t)
	writeFile(t, kdir+"/aliases", "team: far@remote.example, near\n", 0o644)
	a := oracleAgent(t, kdir, main, "")
	store, err := cleanup.OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cleanup.New(cleanup.Config{Hostname: "mx.oracle.test", Location: time.UTC, Logger: slog.New(slog.DiscardHandler)}, store)
	if err != nil {
		t.Fatal(err)
	}
	a.resub = mda.NewCleanupResubmitter(cl)
	a.Deliver(context.Background(), oracleDelivery("Subject: x\r\n\r\nx\r\n", "team+tag@localhost"))
	ids, _ := store.List()
	if len(ids) != 1 {
		t.Fatalf("%d resubmitted", len(ids))
	}
	env, _, _ := store.Read(ids[0])
	var postkit []string
	for _, r := range env.Recipients {
		postkit = append(postkit, r.Addr)
	}
	if strings.Join(postkit, ",") != strings.Join(postfix, ",") {
		t.Errorf("forwarded to: postfix %v, postkit %v", postfix, postkit)
	}
}
