package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/smtpserver"
)

// accessPy runs testdata/access.py (Python's imaplib and poplib) against
// addr; it returns the output, failing the test when the script fails.
func accessPy(t *testing.T, mode, addr, user, pw, data, outdir string, extra ...string) string {
	t.Helper()
	out, err := accessPyErr(t, mode, addr, user, pw, data, outdir, extra...)
	if err != nil {
		t.Fatalf("access.py %s %s: %v\n%s", mode, addr, err, out)
	}
	return out
}

func accessPyErr(t *testing.T, mode, addr, user, pw, data, outdir string, extra ...string) (string, error) {
	t.Helper()
	oracle.Require(t, "python3")
	args := append([]string{filepath.Join("testdata", "access.py"), mode, addr, user, pw,
		filepath.Join(data, "tls", "cert.pem"), outdir}, extra...)
	return run(t, "python3", args...)
}

// maildirMessages returns the contents of the messages in a Maildir's
// new/ and cur/, by path.
func maildirMessages(t *testing.T, root string) map[string]string {
	t.Helper()
	msgs := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(root, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			p := filepath.Join(root, sub, e.Name())
			msgs[p] = mustRead(t, p)
		}
	}
	return msgs
}

func randomWord(t *testing.T) string {
	t.Helper()
	return strings.ToLower(rand.Text()[:12])
}

// The full round trip: swaks submits with STARTTLS and AUTH; the message
// is delivered to demo's Maildir; imaplib (IMAPS and STARTTLS) and poplib
// (POP3S and STLS) read it back byte for byte as it was delivered (CRLF
// line ends, the leading dot restored); an imaplib client in IDLE, sending
// nothing, is told of a second message; POP3 DELE without QUIT deletes
// nothing, DELE and QUIT removes the file from the Maildir.
func TestMailAccessRoundTrip(t *testing.T) {
	oracle.Require(t, "python3")
	dir := t.TempDir()
	p := startServer(t, dir)
	pw := p.password()
	data := filepath.Join(dir, "data")
	maildir := filepath.Join(data, "mail", "demo", "Maildir")
	for _, name := range []string{"imap", "imaps", "pop3", "pop3s"} {
		if p.addrs[name] == "" {
			t.Fatalf("no %s listener in the start-up report %q", name, p.out)
		}
	}

	marker1 := "round trip " + randomWord(t)
	swaks(t, "-s", p.addrs["submission"], "-tls", "-a", "PLAIN", "-au", "demo", "-ap", pw,
		"-f", "demo@localhost", "-t", "demo@localhost", "--header", "Subject: round trip",
		"--body", "first line\n."+marker1+" (a line with a leading dot)\nlast line")
	files := waitFiles(t, filepath.Join(maildir, "new"), 1)
	delivered := mustRead(t, files[0])
	if !strings.Contains(delivered, "\n."+marker1+" ") || strings.Contains(delivered, "\r") {
		t.Fatalf("the delivered message lacks the body or has CR:\n%s", delivered)
	}
	want := strings.ReplaceAll(delivered, "\n", "\r\n")

	out := t.TempDir()
	accessPy(t, "imaps", p.addrs["imaps"], "demo", pw, data, out)
	accessPy(t, "imap-tls", p.addrs["imap"], "demo", pw, data, out)
	uidls := accessPy(t, "pop3s", p.addrs["pop3s"], "demo", pw, data, out)
	accessPy(t, "pop3-stls", p.addrs["pop3"], "demo", pw, data, out)
	for _, name := range []string{"imaps-1", "imap-tls-1", "pop3s-1", "pop3-stls-1"} {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Errorf("%s: %v (client output in %s)", name, err, out)
			continue
		}
		if string(got) != want {
			t.Errorf("%s differs from the delivered message:\n got %q\nwant %q", name, got, want)
		}
	}
	// POP3's UIDL is the IMAP UID (1) and the UIDVALIDITY, Dovecot's format.
	if !regexp.MustCompile(`(?m)^uidl 1 00000001[0-9a-f]{8}$`).MatchString(uidls) {
		t.Errorf("UIDL does not carry IMAP UID 1:\n%s", uidls)
	}

	// IDLE: the client sends nothing after IDLE; the delivery is announced.
	idle := exec.Command("python3", filepath.Join("testdata", "access.py"), "idle", p.addrs["imaps"], "demo", pw,
		filepath.Join(data, "tls", "cert.pem"), out)
	idleOut, err := idle.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	idleErr := new(strings.Builder)
	idle.Stderr = idleErr
	if err := idle.Start(); err != nil {
		t.Fatal(err)
	}
	defer idle.Process.Kill()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(idleOut)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				idle.Wait()
				t.Fatalf("the IDLE client ended early: %s", idleErr)
			}
			return l
		case <-time.After(25 * time.Second):
			t.Fatalf("the IDLE client said nothing: %s", idleErr)
		}
		return ""
	}
	if l := next(); l != "idling 1" {
		t.Fatalf("IDLE client: %q, want \"idling 1\"", l)
	}
	marker2 := "second " + randomWord(t)
	swaks(t, "-s", p.addrs["smtp"], "-f", "alice@example.com", "-t", "demo@localhost",
		"--header", "Subject: while idling", "--body", marker2)
	if l := next(); l != "exists 2" {
		t.Fatalf("IDLE client: %q, want \"exists 2\"", l)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("the IDLE client: %v\n%s", err, idleErr)
	}

	holding := func(s string) []string {
		var paths []string
		for path, text := range maildirMessages(t, maildir) {
			if strings.Contains(text, s) {
				paths = append(paths, path)
			}
		}
		return paths
	}
	if n := len(holding(marker2)); n != 1 {
		t.Fatalf("%d files hold the second message", n)
	}
	// DELE without QUIT: nothing is deleted (RFC 1939's UPDATE state).
	accessPy(t, "pop3-drop", p.addrs["pop3s"], "demo", pw, data, out, marker2)
	if n := len(holding(marker2)); n != 1 {
		t.Fatalf("after DELE without QUIT %d files hold the second message, want 1", n)
	}
	res := accessPy(t, "pop3-dele", p.addrs["pop3s"], "demo", pw, data, out, marker2)
	if !strings.Contains(res, "+OK") {
		t.Errorf("QUIT after DELE: %s", res)
	}
	if n := len(holding(marker2)); n != 0 {
		t.Errorf("after DELE and QUIT %d files still hold the second message", n)
	}
	if n := len(holding(marker1)); n != 1 {
		t.Errorf("%d files hold the first message, want 1", n)
	}
	waitLog(t, p.logPath, "dovecot: imap-login: Login: user=<demo>, method=PLAIN, rip=127.0.0.1",
		"dovecot: pop3-login: Login: user=<demo>", ": Disconnected: Logged out")
}

// Passwords travel only over TLS: the plain IMAP port announces
// LOGINDISABLED and refuses LOGIN; plain POP3 refuses USER/PASS from an
// address that is not the server's own (127.0.0.2 to 127.0.0.1), and
// accepts them from the server's own address, as Dovecot does.
func TestMailAccessPlaintext(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir)
	pw := p.password()

	imap := dialogue(t, "127.0.0.1", p.addrs["imap"], false, "a1 CAPABILITY", "a2 LOGIN demo "+pw)
	if !strings.Contains(imap[1], "LOGINDISABLED") || !strings.Contains(imap[1], "STARTTLS") {
		t.Errorf("IMAP CAPABILITY before TLS: %q", imap[1])
	}
	if !strings.HasPrefix(imap[2], "a2 NO") && !strings.HasPrefix(imap[2], "a2 BAD") {
		t.Errorf("IMAP LOGIN before TLS: %q", imap[2])
	}

	pop := dialogue(t, "127.0.0.2", p.addrs["pop3"], true, "USER demo", "PASS "+pw)
	if strings.HasPrefix(pop[1], "+OK") && strings.HasPrefix(pop[2], "+OK") {
		t.Errorf("POP3 USER/PASS without TLS from 127.0.0.2 was accepted: %q", pop)
	}
	pop = dialogue(t, "127.0.0.1", p.addrs["pop3"], true, "USER demo", "PASS "+pw, "STAT", "QUIT")
	if !strings.HasPrefix(pop[2], "+OK") || !strings.HasPrefix(pop[3], "+OK 0 0") {
		t.Errorf("POP3 USER/PASS from the server's own address: %q", pop)
	}
}

// dialogue sends each command from local address from and returns the
// greeting and each answer: POP3's first line, or IMAP's tagged line
// followed by the untagged lines before it.
func dialogue(t *testing.T, from, addr string, pop3 bool, cmds ...string) []string {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	line := func() string {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: reading an answer: %v", addr, err)
		}
		return strings.TrimRight(l, "\r\n")
	}
	answers := []string{line()}
	for _, cmd := range cmds {
		io.WriteString(c, cmd+"\r\n")
		if pop3 {
			answers = append(answers, line())
			continue
		}
		tag, _, _ := strings.Cut(cmd, " ")
		var all []string
		for {
			l := line()
			all = append(all, l)
			if strings.HasPrefix(l, tag+" ") {
				break
			}
		}
		// The tagged line first, then the untagged ones.
		answers = append(answers, all[len(all)-1]+" "+strings.Join(all[:len(all)-1], " "))
	}
	return answers
}

// Users added to the passwd-file log in over IMAP and POP3 at once (it
// is read again when it changes, as Dovecot does); SIGHUP makes IMAPS and
// POP3 STLS present a replaced certificate. SIGTERM ends an IMAP client's
// IDLE (the connection is closed) and the server exits 0 without waiting
// for the client.
func TestMailAccessReloadAndStop(t *testing.T) {
	oracle.Require(t, "python3")
	dir := t.TempDir()
	p := startServer(t, dir, "-drain-timeout", "60s")
	pw := p.password()
	data := filepath.Join(dir, "data")
	out := t.TempDir()

	// bob gets demo's uid and gid: whoever the mail belongs to.
	demo := strings.Split(strings.TrimSpace(mustRead(t, filepath.Join(data, "passwd"))), ":")
	bobPW := randomWord(t)
	if _, err := accessPyErr(t, "imaps", p.addrs["imaps"], "bob", bobPW, data, out); err == nil {
		t.Fatal("bob logged in before he was added")
	}
	hash, err := auth.HashPassword("SHA512-CRYPT", bobPW)
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(data, "mail", "bob")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		var uid, gid int
		fmt.Sscan(demo[2], &uid)
		fmt.Sscan(demo[3], &gid)
		os.Chown(home, uid, gid)
	}
	f, err := os.OpenFile(filepath.Join(data, "passwd"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "bob:%s:%s:%s::%s::\n", hash, demo[2], demo[3], home)
	f.Close()
	if res := accessPy(t, "imaps", p.addrs["imaps"], "bob", bobPW, data, out); !strings.Contains(res, "fetched 0") {
		t.Errorf("bob's IMAP session: %s", res)
	}
	if _, err := os.Stat(filepath.Join(home, "Maildir", "cur")); err != nil {
		t.Errorf("bob's Maildir: %v", err)
	}

	// A new certificate: served after SIGHUP, not before.
	certFile, keyFile := filepath.Join(data, "tls", "cert.pem"), filepath.Join(data, "tls", "key.pem")
	cert, err := smtpserver.SelfSigned("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := smtpserver.WriteCertificatePEM(cert, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(mustRead(t, certFile)))
	tlsConf := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if c, err := tls.Dial("tcp", p.addrs["imaps"], tlsConf); err == nil {
		c.Close()
		t.Fatal("IMAPS presented the new certificate before SIGHUP")
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p.logPath, "postfix/master", "reload -- version postkit")
	accessPy(t, "imaps", p.addrs["imaps"], "bob", bobPW, data, out)
	accessPy(t, "pop3-stls", p.addrs["pop3"], "bob", bobPW, data, out)

	// An IMAP client in IDLE during SIGTERM.
	c, err := tls.Dial("tcp", p.addrs["imaps"], tlsConf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	fmt.Fprintf(c, "a LOGIN demo %s\r\nb SELECT INBOX\r\nc IDLE\r\n", pw)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("before IDLE: %v", err)
		}
		if strings.HasPrefix(l, "a NO") || strings.HasPrefix(l, "b NO") {
			t.Fatalf("IMAP: %q", l)
		}
		if strings.HasPrefix(l, "+") {
			break
		}
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM with a client in IDLE: %v\n%s", err, p.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { <-ctx.Done(); c.Close() }()
	rest, _ := io.ReadAll(r)
	if ctx.Err() != nil {
		t.Errorf("the IDLE connection stayed open after the server exited (read %q)", rest)
	}
}

// The IMAP and POP3 mail location follows the local agent: the userdb's
// mail field, else HOME/home_mailbox when it is a Maildir, else
// HOME/Maildir.
func TestMailRoot(t *testing.T) {
	for _, c := range []struct {
		homeMailbox, mail, want string
	}{
		{"Maildir/", "", "/home/u/Maildir"},
		{"Mail/box/", "", "/home/u/Mail/box"},
		{"Mailbox", "", "/home/u/Maildir"}, // an mbox: not served, the default instead
		{"../elsewhere/", "", "/home/u/Maildir"},
		{"/var/mail/x/", "", "/home/u/Maildir"},
		{"Mail/", "maildir:~/Other", "/home/u/Other"},
	} {
		s := &server{}
		s.gen.Store(&generation{homeMailbox: c.homeMailbox})
		got, err := s.mailRoot(context.Background(), auth.User{Name: "u", Home: "/home/u", Mail: c.mail})
		if err != nil || got != c.want {
			t.Errorf("home_mailbox %q, mail %q: %q, %v; want %q", c.homeMailbox, c.mail, got, err, c.want)
		}
	}
}
