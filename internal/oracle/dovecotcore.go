package oracle

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// What the private Dovecot launchers (StartDovecotAuth, StartDovecotPOP3,
// StartDovecotIMAP) share: a directory holding everything, the files
// written into it, the master run in the foreground, and the wait for its
// listener. Each launcher only says how its dovecot.conf differs.

// dovecotFile is a file a launcher writes into the instance's directory.
type dovecotFile struct {
	name, data string
	mode       os.FileMode
}

// newDovecotDir makes the directory of a private Dovecot, removed when the
// test ends, with the empty subdirectories subs in it. Its name is short
// (os.MkdirTemp with prefix): Dovecot's sockets live under base_dir and
// socket paths are limited to 108 bytes. It is searchable by everyone:
// Dovecot's unprivileged processes, and Postfix's smtpd (user postfix)
// where a test connects it to the auth socket.
func newDovecotDir(t testing.TB, prefix string, subs ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sub := range subs {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeDovecotFiles writes files into dir.
func writeDovecotFiles(t testing.TB, dir string, files ...dovecotFile) {
	t.Helper()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
	}
}

// runDovecot runs `dovecot -F -c DIR/dovecot.conf` in its own process
// group and returns the master's pid once a connection to addr on network
// succeeds (what names the listener in the failure message). When the test
// ends it sends SIGTERM to the whole group, not only the master: a mail
// process whose client is still connected would otherwise hold the master
// for 10 seconds; SIGKILL follows if the group is not gone in 10 seconds.
func runDovecot(t testing.TB, bin, dir, network, addr, what string) int {
	t.Helper()
	cmd := exec.Command(bin, "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pid, syscall.SIGKILL)
			<-exited
		}
	})
	logPath := filepath.Join(dir, "log")
	for deadline := time.Now().Add(20 * time.Second); ; {
		if c, err := net.Dial(network, addr); err == nil {
			c.Close()
			return pid
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("dovecot exited: %s\n%s", out.String(), log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("dovecot's %s did not come up: %s\n%s", what, out.String(), log)
		}
	}
}

// dovecotLog returns the log at path so far.
func dovecotLog(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// chownTree gives the tree at path to uid and gid, not following links.
func chownTree(t testing.TB, path string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// claimTestPort claims a free loopback port (see claimPort) until the
// test ends.
func claimTestPort(t testing.TB) int {
	t.Helper()
	port, f, err := claimPort()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return port
}

// yesNo is a boolean as Dovecot's settings spell it.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// dovecotMailConfig is how a mail protocol's private Dovecot differs from
// the others'.
type dovecotMailConfig struct {
	proto  string // "pop3", "imap": the protocol, its binary and its login service
	prefix string // of the directory's name
	// The options the protocols share.
	passwd, mailLocation string
	certFile, keyFile    string
	disablePlaintextAuth bool
	// extra is appended to dovecot.conf: the protocol's own settings, then
	// the caller's Extra.
	extra string
}

// dovecotMail is a running mail protocol's private Dovecot.
type dovecotMail struct {
	dir, addr, tlsAddr, logPath string
	uid, gid, pid               int
}

// startDovecotMail starts Dovecot 2.3 serving only c.proto, with its own
// base_dir and listeners on 127.0.0.1 (a plain one, and an implicit-TLS
// one when c.certFile is set), the passwd-file passdb c.passwd and a static
// userdb with the current user's uid and gid (nobody's when running as
// root: Dovecot will not run mail processes as root, nor as any uid under
// first_valid_uid); every user's home is DIR/home/USER. The login processes
// run as dovenull and the internal ones as dovecot, as Debian installs
// them. It stops when the test ends. A missing dovecot, or a missing
// binary of the protocol, skips the test locally and fails it under CI.
func startDovecotMail(t testing.TB, c dovecotMailConfig) dovecotMail {
	t.Helper()
	bin := Require(t, "dovecot")
	if _, err := os.Stat("/usr/lib/dovecot/" + c.proto); err != nil {
		Unavailable(t, "oracle: Dovecot's %s is not installed (dovecot-%sd)", c.proto, c.proto)
	}
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("oracle: running as root needs user nobody: %v", err)
		}
		uid, _ = strconv.Atoi(nobody.Uid)
		gid, _ = strconv.Atoi(nobody.Gid)
	}
	port, sport := claimTestPort(t), 0
	ssl := "ssl = no\n"
	if c.certFile != "" {
		sport = claimTestPort(t)
		ssl = fmt.Sprintf("ssl = yes\nssl_cert = <%s\nssl_key = <%s\n", c.certFile, c.keyFile)
	}
	listeners := fmt.Sprintf("  inet_listener %s {\n    address = 127.0.0.1\n    port = %d\n  }\n", c.proto, port)
	if sport != 0 {
		listeners += fmt.Sprintf("  inet_listener %ss {\n    address = 127.0.0.1\n    port = %d\n    ssl = yes\n  }\n", c.proto, sport)
	} else {
		listeners += fmt.Sprintf("  inet_listener %ss {\n    port = 0\n  }\n", c.proto)
	}
	dir := newDovecotDir(t, c.prefix, "run", "state", "home")
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/log
protocols = %[2]s
listen = 127.0.0.1
%[3]sdisable_plaintext_auth = %[4]s
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = %[5]s
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = static
  args = uid=%[6]d gid=%[7]d home=%[1]s/home/%%u
}
service %[2]s-login {
%[8]s}
service anvil {
  chroot =
}
%[9]s
`, dir, c.proto, ssl, yesNo(c.disablePlaintextAuth), c.mailLocation, uid, gid, listeners, c.extra)
	writeDovecotFiles(t, dir, dovecotFile{"dovecot.conf", conf, 0o644}, dovecotFile{"passwd", c.passwd, 0o644})
	d := dovecotMail{dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", port), logPath: filepath.Join(dir, "log"), uid: uid, gid: gid}
	if sport != 0 {
		d.tlsAddr = fmt.Sprintf("127.0.0.1:%d", sport)
	}
	d.pid = runDovecot(t, bin, dir, "tcp", d.addr, c.proto+" listener")
	return d
}
