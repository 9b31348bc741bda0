package local

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/queue"
)

// addUser creates a system user with its home in a scratch directory for
// the test (root only) and removes it afterwards.
func addUser(t *testing.T) (name, home string, uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		oracle.Unavailable(t, "creating a test user needs root")
	}
	useradd, err := exec.LookPath("useradd")
	if err != nil {
		oracle.Unavailable(t, "useradd is not installed")
	}
	name = fmt.Sprintf("pkt%06d", rand.IntN(1000000))
	home = filepath.Join(openDir(t), name)
	if out, err := exec.Command(useradd, "-M", "-d", home, "-s", "/bin/sh", "-U", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, ok, err := passwdDB{path: passwdFile}.find(func(u auth.User) bool { return u.Name == name })
	if err != nil || !ok {
		t.Fatalf("new user %s not in %s: %v", name, passwdFile, err)
	}
	return name, home, u.UID, u.GID
}

// TestMatchesPostfixForward compares a user's .forward (a command, the
// user's own mailbox, a remote address) and .forward+ext (a file), with
// home_mailbox = Maildir/, between Postfix and postkit: the status of
// every delivery, the files, their owners and modes.
func TestMatchesPostfixForward(t *testing.T) {
	t.Parallel()
	user, home, uid, gid := addUser(t)
	setup := func() {
		os.RemoveAll(home)
		mkdirMode(t, home, 0o755)
		writeFile(t, home+"/.forward", "\"|cat > "+home+"/fwd.out\"\n"+user+", far@remote.example\n", 0o644)
		writeFile(t, home+"/.forward+ext", home+"/ext.mbox\n", 0o600)
		for _, f := range []string{home, home + "/.forward", home + "/.forward+ext"} {
			if err := os.Chown(f, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	setup()
	const main = "mydestination = localhost, $myhostname\nlocal_recipient_maps =\nhome_mailbox = Maildir/\nrecipient_delimiter = +\n"
	pdir := openDir(t)
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main})
	rcpts := []string{user + "@localhost", user + "+ext@localhost"}
	c := p.Session(t)
	c.Cmd("EHLO client.test")
	c.Cmd("MAIL FROM:<alice@example.org>")
	for _, r := range rcpts {
		c.Cmd("RCPT TO:<" + r + ">")
	}
	c.Cmd("DATA")
	c.Message(oracleMessage)
	c.Close()
	logRE := regexp.MustCompile(`: to=<([^>]+)>, (?:orig_to=<[^>]+>, )?relay=(\S+), delay=\S+, delays=\S+, dsn=(\S+), status=(\S+) \((.*)\)$`)
	fwdRE := regexp.MustCompile(`forwarded as [0-9A-Z]+`)
	// Postfix logs one line per delivery of the expansion.
	var postfix []string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		postfix = postfix[:0]
		for _, l := range strings.Split(p.Log(), "\n") {
			if m := logRE.FindStringSubmatch(l); m != nil && strings.HasPrefix(m[1], user) {
				postfix = append(postfix, fmt.Sprintf("%s dsn=%s, status=%s (%s)", m[1], m[3], m[4], fwdRE.ReplaceAllString(m[5], "forwarded as ID")))
			}
		}
		if len(postfix) >= 4 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	slices.Sort(postfix)
	// Keep Postfix's files and start again for postkit.
	if err := os.Rename(home, filepath.Join(pdir, "home")); err != nil {
		t.Fatal(err)
	}
	setup()
	var content string
	pf := dirFiles(t, filepath.Join(pdir, "home/Maildir/new"))
	if len(pf) != 1 {
		t.Fatalf("postfix: %d files in Maildir/new; log:\n%s", len(pf), strings.Join(postfix, "\n"))
	}
	hdrs := "Return-Path: <alice@example.org>\nX-Original-To: " + user + "@localhost\nDelivered-To: " + user + "@localhost\n"
	if data := read(t, pf[0]); strings.HasPrefix(data, hdrs) {
		content = strings.ReplaceAll(strings.TrimPrefix(data, hdrs), "\n", "\r\n")
	} else {
		t.Fatalf("postfix maildir file:\n%s", data)
	}

	var logs bytes.Buffer
	cfg, err := config.Parse("main.cf", strings.NewReader("myhostname = mx.oracle.test\nalias_maps =\n"+main))
	if err != nil {
		t.Fatal(err)
	}
	store, err := cleanup.OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cleanup.New(cleanup.Config{Hostname: "mx.oracle.test", Location: time.UTC, Logger: slog.New(slog.DiscardHandler)}, store)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	a, err := FromConfig(context.Background(), cfg, Options{Hostname: host, Resubmit: mda.NewCleanupResubmitter(cl),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	words := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	var postkit []string
	leafRE := regexp.MustCompile(`expansion of <[^>]+>: to=<([^>]+)>, dsn=(\S+), status=(\S+) \((.*?)\)"`)
	for _, r := range rcpts {
		logs.Reset()
		res := a.Deliver(context.Background(), oracleDelivery(content, r))[0]
		leaves := leafRE.FindAllStringSubmatch(logs.String(), -1)
		if len(leaves) == 0 {
			postkit = append(postkit, fmt.Sprintf("%s dsn=%s, status=%s (%s)", r, res.DSN, words[res.Outcome], fwdRE.ReplaceAllString(res.Reason, "forwarded as ID")))
		}
		for _, l := range leaves {
			postkit = append(postkit, fmt.Sprintf("%s dsn=%s, status=%s (%s)", l[1], l[2], l[3], fwdRE.ReplaceAllString(l[4], "forwarded as ID")))
		}
	}
	slices.Sort(postkit)
	if strings.Join(postkit, "\n") != strings.Join(postfix, "\n") {
		t.Errorf("deliveries differ:\npostfix:\n%s\npostkit:\n%s", strings.Join(postfix, "\n"), strings.Join(postkit, "\n"))
	}
	norm := regexp.MustCompile(`(?m)^From (\S+)  [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}$`)
	for _, f := range []string{"fwd.out", "ext.mbox"} {
		a := norm.ReplaceAllString(read(t, filepath.Join(pdir, "home", f)), "From $1  DATE")
		b := norm.ReplaceAllString(read(t, filepath.Join(home, f)), "From $1  DATE")
		if a != b {
			t.Errorf("%s differs:\n%s", f, oracle.Diff(a, b))
		}
		sameOwnerMode(t, filepath.Join(pdir, "home", f), filepath.Join(home, f))
	}
	kf := dirFiles(t, filepath.Join(home, "Maildir/new"))
	if len(kf) != 1 || read(t, kf[0]) != read(t, pf[0]) {
		t.Errorf("Maildir copy differs (%d files)", len(kf))
	} else {
		sameOwnerMode(t, pf[0], kf[0])
	}
	for _, sub := range []string{"Maildir", "Maildir/new", "Maildir/tmp", "Maildir/cur"} {
		sameOwnerMode(t, filepath.Join(pdir, "home", sub), filepath.Join(home, sub))
	}
	if q, _ := store.List(); len(q) != 1 {
		t.Errorf("postkit forwarded %d messages, want 1", len(q))
	} else if env, data, _ := store.Read(q[0]); env.Recipients[0].Addr != "far@remote.example" ||
		!strings.HasPrefix(string(data), "Delivered-To: "+user+"@localhost\r\n") {
		t.Errorf("forwarded copy: %+v\n%s", env, data)
	}
}

// TestMatchesPostfixMailboxCommand compares mailbox_command delivery for
// an ordinary user: the status, the command's input, the files it creates
// (owner and mode) and its whole environment.
func TestMatchesPostfixMailboxCommand(t *testing.T) {
	t.Parallel()
	user, home, uid, gid := addUser(t)
	mkdirMode(t, home, 0o755)
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	const main = "mydestination = localhost, $myhostname\nlocal_recipient_maps =\nrecipient_delimiter = +\n" +
		`mailbox_command = /bin/sh -c 'cat > "$HOME/mc.out"; env | sort > "$HOME/env.out"; pwd > "$HOME/pwd.out"'` + "\n"
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main})
	rcpt := user + "+tag@localhost"
	c := p.Session(t)
	c.Cmd("EHLO client.test")
	c.Cmd("MAIL FROM:<alice@example.org>")
	c.Cmd("RCPT TO:<" + rcpt + ">")
	c.Cmd("DATA")
	c.Message(oracleMessage)
	c.Close()
	line := p.WaitLog(t, 60*time.Second, "to=<"+rcpt+">", "status=")
	m := regexp.MustCompile(`dsn=(\S+), status=(\S+) \((.*)\)$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("log line %q", line)
	}
	pdir := openDir(t)
	for _, f := range []string{"mc.out", "env.out", "pwd.out"} {
		if err := os.Rename(filepath.Join(home, f), filepath.Join(pdir, f)); err != nil {
			t.Fatal(err)
		}
	}
	mc := read(t, filepath.Join(pdir, "mc.out"))
	_, rest, ok := strings.Cut(mc, "\nDelivered-To: "+rcpt+"\n")
	if !ok {
		t.Fatalf("command input:\n%s", mc)
	}
	content := strings.ReplaceAll(rest, "\n", "\r\n")

	cfg, err := config.Parse("main.cf", strings.NewReader("myhostname = mx.oracle.test\nalias_maps =\n"+main))
	if err != nil {
		t.Fatal(err)
	}
	a, err := FromConfig(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	d := oracleDelivery(content, rcpt)
	d.Envelope.Client = cleanup.ClientInfo{Name: "unknown", Addr: "127.0.0.1", Helo: "client.test", Proto: "ESMTP"}
	res := a.Deliver(context.Background(), d)[0]
	words := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	if got, want := fmt.Sprintf("dsn=%s, status=%s (%s)", res.DSN, words[res.Outcome], res.Reason),
		fmt.Sprintf("dsn=%s, status=%s (%s)", m[1], m[2], m[3]); got != want {
		t.Errorf("postfix: %s\npostkit: %s", want, got)
	}
	norm := regexp.MustCompile(`(?m)^From (\S+)  [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}$`)
	// Variables that come from each process's own environment and
	// working directory: export_environment passes LANG and MAIL_CONFIG
	// as the daemon has them (Postfix sets MAIL_CONFIG to its config
	// directory), and the working directory is the queue directory in
	// Postfix, postkit's own one here.
	ownEnv := regexp.MustCompile(`(?m)^(LANG|MAIL_CONFIG|PWD)=.*\n`)
	for _, f := range []string{"mc.out", "env.out"} {
		pf := ownEnv.ReplaceAllString(norm.ReplaceAllString(read(t, filepath.Join(pdir, f)), "From $1  DATE"), "")
		pk := ownEnv.ReplaceAllString(norm.ReplaceAllString(read(t, filepath.Join(home, f)), "From $1  DATE"), "")
		if pf != pk {
			t.Errorf("%s differs:\n%s", f, oracle.Diff(pf, pk))
		}
		sameOwnerMode(t, filepath.Join(pdir, f), filepath.Join(home, f))
	}
	if pk := read(t, filepath.Join(home, "env.out")); !strings.Contains(pk, "\nCLIENT_HELO=client.test\n") || !strings.Contains(pk, "\nEXTENSION=tag\n") {
		t.Errorf("environment:\n%s", pk)
	}
}
