package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// started runs a command and waits for a stdout line matching re,
// returning its submatches; the process is killed at the end of the test.
func started(t *testing.T, cmd *exec.Cmd, re *regexp.Regexp, stderr *strings.Builder) []string {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
			}
		}
		close(found)
	}()
	select {
	case m, ok := <-found:
		if !ok {
			t.Fatalf("%s exited: %s", cmd.Path, stderr)
		}
		return m
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not start: %s", cmd.Path, stderr)
	}
	return nil
}

func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg)+".bin")
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// The LAN's mail goes through the smarthost to a relay host that demands
// STARTTLS and AUTH: examples/mailserver's submission port on loopback,
// whose user demo receives the message in its Maildir. The relay host's
// log shows the login; a wrong password keeps the mail queued (deferred),
// not lost; clients outside mynetworks are refused.
func TestRelayThroughSubmission(t *testing.T) {
	oracle.Require(t, "swaks")
	dir := t.TempDir()
	smarthost := build(t, dir, "../smarthost")
	mailserver := build(t, dir, "../mailserver")

	if os.Getuid() == 0 {
		// Under root the relay host delivers as nobody, which must reach
		// its data directory.
		for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
		}
	}
	// The relay host.
	var msErr strings.Builder
	ms := exec.Command(mailserver, "-data", filepath.Join(dir, "provider"), "-log", filepath.Join(dir, "provider.log"),
		"-smtp", "", "-submissions", "", "-submission", "127.0.0.1:0")
	ms.Dir = dir
	var pw, subAddr string
	msOut, _ := ms.StdoutPipe()
	ms.Stderr = &msErr
	if err := ms.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Process.Kill(); ms.Wait() })
	sc := bufio.NewScanner(msOut)
	for sc.Scan() && sc.Text() != "ready" {
		if rest, ok := strings.CutPrefix(sc.Text(), "created user demo with password "); ok {
			pw = strings.Fields(rest)[0]
		}
		if rest, ok := strings.CutPrefix(sc.Text(), "listening submission "); ok {
			subAddr = rest
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if pw == "" || subAddr == "" {
		t.Fatalf("the relay host did not start: %s", msErr.String())
	}

	// The smarthost, first with a wrong password: the mail is deferred.
	run := func(password string) (*exec.Cmd, string) {
		var stderr strings.Builder
		cmd := exec.Command(smarthost, "-data", filepath.Join(dir, "smarthost"), "-listen", "127.0.0.1:0",
			"-relayhost", "["+strings.Split(subAddr, ":")[0]+"]:"+strings.Split(subAddr, ":")[1],
			"-sasl-user", "demo", "-sasl-password", password, "-mynetworks", "127.0.0.1/32", "-hostname", "gw.lan.example")
		m := started(t, cmd, regexp.MustCompile(`^listening smtp (\S+),`), &stderr)
		return cmd, m[1]
	}
	sh, addr := run("wrong-" + pw)
	if out, err := exec.Command("swaks", "-s", addr, "-f", "printer@lan.example", "-t", "demo@localhost",
		"--header", "Subject: scan 1").CombinedOutput(); err != nil {
		t.Fatalf("swaks to the smarthost: %v\n%s", err, out)
	}
	waitFor(t, "the relay host refusing the login", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "provider.log"))
		return strings.Contains(string(b), "authentication failed")
	})
	sh.Process.Signal(syscall.SIGTERM)
	if err := sh.Wait(); err != nil {
		t.Fatalf("the smarthost did not exit 0 on SIGTERM: %v", err)
	}
	if n := countFiles(filepath.Join(dir, "smarthost", "queue", "deferred")); n != 1 {
		t.Fatalf("%d messages deferred after the failed login, want 1", n)
	}

	// With the right password, the restart delivers the queued message
	// and a new one (the deferred one when its retry is due: flush by
	// restarting is not enough, so only the new one is awaited here).
	_, addr = run(pw)
	if out, err := exec.Command("swaks", "-s", addr, "-f", "printer@lan.example", "-t", "demo@localhost",
		"--header", "Subject: scan 2").CombinedOutput(); err != nil {
		t.Fatalf("swaks to the smarthost: %v\n%s", err, out)
	}
	maildir := filepath.Join(dir, "provider", "mail", "demo", "Maildir", "new")
	waitFor(t, "the message in the relay host's Maildir", func() bool { return countFiles(maildir) >= 1 })
	ents, _ := os.ReadDir(maildir)
	found := false
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(maildir, e.Name()))
		if strings.Contains(string(b), "Subject: scan 2") && strings.Contains(string(b), "Return-Path: <printer@lan.example>") {
			found = true
		}
	}
	if !found {
		t.Errorf("scan 2 is not in the Maildir")
	}
	log, _ := os.ReadFile(filepath.Join(dir, "provider.log"))
	if !regexp.MustCompile(`postfix/submission/smtpd\[\d+\]: \w+: client=\S+, sasl_method=\S+, sasl_username=demo`).Match(log) {
		t.Errorf("the relay host's log shows no login by demo:\n%s", log)
	}
	if !strings.Contains(maildirText(t, maildir), "with ESMTPSA") {
		t.Errorf("the relayed message did not come over TLS with AUTH (no ESMTPSA in Received:)")
	}

	// Outside mynetworks (127.0.0.2 with mynetworks 127.0.0.1/32): refused.
	out, _ := exec.Command("swaks", "-s", addr, "--local-interface", "127.0.0.2", "-f", "x@outside.example",
		"-t", "demo@localhost", "--quit-after", "RCPT").CombinedOutput()
	if !regexp.MustCompile(`<~?\*+ +554 5\.7\.1 `).Match(out) {
		t.Errorf("a client outside mynetworks was not refused with 554 5.7.1:\n%s", out)
	}
}

func maildirText(t *testing.T, dir string) string {
	var b strings.Builder
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		d, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		b.Write(d)
	}
	return b.String()
}

func countFiles(dir string) int {
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
