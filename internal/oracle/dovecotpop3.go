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

// DovecotPOP3Options configure a private Dovecot POP3 server.
type DovecotPOP3Options struct {
	// Passwd is the passwd-file of the passdb (users with their
	// passwords; uid, gid and home come from the static userdb).
	Passwd string
	// MailLocation is mail_location, with Dovecot's variables
	// ("maildir:/tmp/x/%u"). Required.
	MailLocation string
	// CertFile and KeyFile, when set, enable ssl (STLS and a POP3S
	// listener).
	CertFile, KeyFile string
	// DisablePlaintextAuth is disable_plaintext_auth (no by default here,
	// unlike Dovecot's yes).
	DisablePlaintextAuth bool
	// LockSession is pop3_lock_session.
	LockSession bool
	// Extra is appended to dovecot.conf.
	Extra string
}

// DovecotPOP3 is a private `dovecot -F` serving POP3 on loopback ports.
type DovecotPOP3 struct {
	Dir     string
	Addr    string // POP3 (STLS when TLS is configured)
	TLSAddr string // POP3S, "" without TLS
	LogPath string
	// UID and GID own the mail: the current user's, or nobody's when
	// running as root (Dovecot refuses uid 0 for mail processes).
	// Chown gives a Maildir tree to them.
	UID, GID int
}

// Chown gives the tree at path to the mail user (d.UID, d.GID).
func (d *DovecotPOP3) Chown(t testing.TB, path string) {
	t.Helper()
	err := filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, d.UID, d.GID)
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

// StartDovecotPOP3 starts Dovecot 2.3 with only the pop3 protocol, its own
// base_dir and listeners on 127.0.0.1, the passwd-file passdb of opts and
// a static userdb with the current user's uid and gid (nobody's when
// running as root: Dovecot will not run mail processes as root), and stops it when the test ends. The login
// processes run as dovenull and the internal ones as dovecot, as Debian
// installs them. A missing dovecot or pop3 binary skips the test locally
// and fails it under CI.
func StartDovecotPOP3(t testing.TB, opts DovecotPOP3Options) *DovecotPOP3 {
	t.Helper()
	bin := Require(t, "dovecot")
	if _, err := os.Stat("/usr/lib/dovecot/pop3"); err != nil {
		Unavailable(t, "oracle: Dovecot's pop3 is not installed (dovecot-pop3d)")
	}
	dir, err := os.MkdirTemp("", "dvp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
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
	if opts.CertFile != "" {
		sport = claimTestPort(t)
		ssl = fmt.Sprintf("ssl = yes\nssl_cert = <%s\nssl_key = <%s\n", opts.CertFile, opts.KeyFile)
	}
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	listeners := fmt.Sprintf("  inet_listener pop3 {\n    address = 127.0.0.1\n    port = %d\n  }\n", port)
	if sport != 0 {
		listeners += fmt.Sprintf("  inet_listener pop3s {\n    address = 127.0.0.1\n    port = %d\n    ssl = yes\n  }\n", sport)
	} else {
		listeners += "  inet_listener pop3s {\n    port = 0\n  }\n"
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/log
protocols = pop3
listen = 127.0.0.1
%[2]sdisable_plaintext_auth = %[3]s
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = %[4]s
pop3_lock_session = %[5]s
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = static
  args = uid=%[6]d gid=%[7]d home=%[1]s/home/%%u
}
service pop3-login {
%[8]s}
service anvil {
  chroot =
}
%[9]s
`, dir, ssl, yn(opts.DisablePlaintextAuth), opts.MailLocation, yn(opts.LockSession),
		uid, gid, listeners, opts.Extra)
	if err := os.WriteFile(filepath.Join(dir, "dovecot.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(opts.Passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"run", "state", "home"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d := &DovecotPOP3{Dir: dir, Addr: fmt.Sprintf("127.0.0.1:%d", port), LogPath: filepath.Join(dir, "log"), UID: uid, GID: gid}
	if sport != 0 {
		d.TLSAddr = fmt.Sprintf("127.0.0.1:%d", sport)
	}
	cmd := exec.Command(bin, "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		if c, err := net.Dial("tcp", d.Addr); err == nil {
			c.Close()
			return d
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(d.LogPath)
			t.Fatalf("dovecot exited: %s\n%s", out.String(), log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(d.LogPath)
			t.Fatalf("dovecot's pop3 listener did not come up: %s\n%s", out.String(), log)
		}
	}
}

// Log returns Dovecot's log so far.
func (d *DovecotPOP3) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
