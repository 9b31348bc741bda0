package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// binary is the mailserver built once for the tests (TestMain).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailserver-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binary = filepath.Join(dir, "mailserver")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the mailserver: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one run of the mailserver binary.
type proc struct {
	cmd     *exec.Cmd
	addrs   map[string]string // listener name -> bound address
	out     []string          // the start-up report lines
	stderr  *strings.Builder
	logPath string
	done    chan error
}

// password returns the demo password of the start-up report ("" when
// the user already existed).
func (p *proc) password() string {
	for _, l := range p.out {
		if rest, ok := strings.CutPrefix(l, "created user demo with password "); ok {
			return strings.Fields(rest)[0]
		}
	}
	return ""
}

// startServer runs the binary in dir with -data dir/data, the seven
// listeners (SMTP, submission, submissions, IMAP, IMAPS, POP3, POP3S) on
// free ports and the log in dir/maillog, plus args; it
// returns once the server printed "ready".
func startServer(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{addrs: map[string]string{}, stderr: new(strings.Builder), logPath: filepath.Join(dir, "maillog"),
		done: make(chan error, 1)}
	all := append([]string{"-data", filepath.Join(dir, "data"), "-log", p.logPath,
		"-smtp", "127.0.0.1:0", "-submission", "127.0.0.1:0", "-submissions", "127.0.0.1:0",
		"-imap", "127.0.0.1:0", "-imaps", "127.0.0.1:0", "-pop3", "127.0.0.1:0", "-pop3s", "127.0.0.1:0"}, args...)
	if os.Getuid() == 0 {
		// Under root the mail is delivered as nobody (firstStart), which
		// must reach the data directory through the test's directories.
		for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
		}
	}
	p.cmd = exec.Command(binary, all...)
	p.cmd.Dir = dir
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the server exited before it was ready: %s", p.stderr)
			}
			if l == "ready" {
				go func() {
					for range lines {
					}
				}()
				return p
			}
			p.out = append(p.out, l)
			if f := strings.Fields(l); len(f) == 3 && f[0] == "listening" {
				p.addrs[f[1]] = f[2]
			}
		case <-timeout:
			t.Fatalf("the server did not get ready: stdout %q, stderr %s", p.out, p.stderr)
		}
	}
}

// stop sends SIGTERM and returns the exit error (nil for status 0).
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(40 * time.Second):
		t.Fatalf("the server did not exit after SIGTERM: %s", p.stderr)
		return nil
	}
}

// run runs a command and returns its combined output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// swaks runs swaks against addr and fails the test unless it succeeds.
func swaks(t *testing.T, args ...string) string {
	t.Helper()
	oracle.Require(t, "swaks")
	out, err := run(t, "swaks", args...)
	if err != nil {
		t.Fatalf("swaks %q: %v\n%s", args, err, out)
	}
	return out
}

// waitFiles waits until dir holds at least n files and returns their
// paths.
func waitFiles(t *testing.T, dir string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if len(ents) >= n {
			var paths []string
			for _, e := range ents {
				paths = append(paths, filepath.Join(dir, e.Name()))
			}
			return paths
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d files, want %d", dir, len(ents), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLog waits until the log file has a line containing each of subs.
func waitLog(t *testing.T, path string, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		missing := ""
		for _, s := range subs {
			if !strings.Contains(string(data), s) {
				missing = s
				break
			}
		}
		if missing == "" {
			return string(data)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log has no %q:\n%s", missing, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// smtpReply sends the commands over a plain connection from local address
// from (e.g. "127.0.0.2") and returns the last reply line of each.
func smtpDialogue(t *testing.T, from, addr string, cmds ...string) []string {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	read := func() string {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading a reply: %v", err)
			}
			if len(l) < 4 || l[3] != '-' {
				return strings.TrimRight(l, "\r\n")
			}
		}
	}
	replies := []string{read()}
	for _, cmd := range cmds {
		io.WriteString(c, cmd+"\r\n")
		replies = append(replies, read())
	}
	return replies
}
