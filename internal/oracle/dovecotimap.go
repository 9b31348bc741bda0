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

// DovecotIMAPOptions configure a private Dovecot IMAP server.
type DovecotIMAPOptions struct {
	// Passwd is the passwd-file of the passdb ("user:{PLAIN}password"
	// lines; uid, gid and home come from the static userdb: every user's
	// home is DIR/home/USER). Required.
	Passwd string
	// MailLocation is mail_location ("maildir:~/Maildir" when empty).
	MailLocation string
	// CertFile and KeyFile, when set, enable ssl: STARTTLS and an IMAPS
	// listener (TLSAddr).
	CertFile, KeyFile string
	// DisablePlaintextAuth is disable_plaintext_auth (no by default here,
	// unlike Dovecot's yes).
	DisablePlaintextAuth bool
	// MaxUserIPConnections is mail_max_userip_connections for imap (0
	// keeps Dovecot's 10).
	MaxUserIPConnections int
	// ProcessLimit is the imap service's process_limit, the number of
	// logged-in sessions at once (Dovecot runs one process per session;
	// 0 keeps Dovecot's 1024).
	ProcessLimit int
	// Extra is appended to dovecot.conf.
	Extra string
}

// DovecotIMAP is a private `dovecot -F` serving IMAP on loopback ports.
type DovecotIMAP struct {
	Dir     string // configuration, state, log and DIR/home/USER
	Addr    string // IMAP (STARTTLS when TLS is configured)
	TLSAddr string // IMAPS, "" without TLS
	LogPath string
	// UID and GID own the mail: the current user's, or nobody's when
	// running as root (Dovecot refuses uid 0 for mail processes).
	// Chown gives a tree to them.
	UID, GID int
	// Pid is the master process's.
	Pid int
}

// StartDovecotIMAP starts Dovecot 2.3 with only the imap protocol, its own
// base_dir and listeners on 127.0.0.1, the passwd-file passdb of opts and
// a static userdb with the current user's uid and gid (nobody's when
// running as root), and stops it when the test ends. The login processes
// run as dovenull and the internal ones as dovecot, as Debian installs
// them. The homes DIR/home/USER of the passwd-file's users are made,
// owned by the mail user. A missing dovecot or imap binary skips the
// test locally and fails it under CI.
func StartDovecotIMAP(t testing.TB, opts DovecotIMAPOptions) *DovecotIMAP {
	t.Helper()
	bin := Require(t, "dovecot")
	if _, err := os.Stat("/usr/lib/dovecot/imap"); err != nil {
		Unavailable(t, "oracle: Dovecot's imap is not installed (dovecot-imapd)")
	}
	if opts.Passwd == "" {
		t.Fatal("oracle: DovecotIMAPOptions.Passwd is required")
	}
	if opts.MailLocation == "" {
		opts.MailLocation = "maildir:~/Maildir"
	}
	// A short directory: socket paths under base_dir are limited to 108
	// bytes.
	dir, err := os.MkdirTemp("", "dvi")
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
	yn := "no"
	if opts.DisablePlaintextAuth {
		yn = "yes"
	}
	listeners := fmt.Sprintf("  inet_listener imap {\n    address = 127.0.0.1\n    port = %d\n  }\n", port)
	if sport != 0 {
		listeners += fmt.Sprintf("  inet_listener imaps {\n    address = 127.0.0.1\n    port = %d\n    ssl = yes\n  }\n", sport)
	} else {
		listeners += "  inet_listener imaps {\n    port = 0\n  }\n"
	}
	var imapService, imapProtocol string
	if opts.ProcessLimit > 0 {
		// Every session also holds connections to the log, config and
		// anvil services: raise their client limits with it.
		imapService = fmt.Sprintf("default_client_limit = %d\nservice imap {\n  process_limit = %d\n}\n", 2*opts.ProcessLimit+200, opts.ProcessLimit)
	}
	if opts.MaxUserIPConnections > 0 {
		imapProtocol = fmt.Sprintf("protocol imap {\n  mail_max_userip_connections = %d\n}\n", opts.MaxUserIPConnections)
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/log
protocols = imap
listen = 127.0.0.1
%[2]sdisable_plaintext_auth = %[3]s
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = %[4]s
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = static
  args = uid=%[5]d gid=%[6]d home=%[1]s/home/%%u
}
service imap-login {
%[7]s}
service anvil {
  chroot =
}
%[8]s%[9]s%[10]s
`, dir, ssl, yn, opts.MailLocation, uid, gid, listeners, imapService, imapProtocol, opts.Extra)
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
	d := &DovecotIMAP{Dir: dir, Addr: fmt.Sprintf("127.0.0.1:%d", port), LogPath: filepath.Join(dir, "log"), UID: uid, GID: gid}
	if sport != 0 {
		d.TLSAddr = fmt.Sprintf("127.0.0.1:%d", sport)
	}
	for _, l := range strings.Split(opts.Passwd, "\n") {
		name, _, ok := strings.Cut(l, ":")
		if !ok || name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
			continue
		}
		h := filepath.Join(dir, "home", name)
		if err := os.MkdirAll(h, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(h, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	d.Pid = cmd.Process.Pid
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// The whole process group: an imap process whose client is still
		// connected would otherwise hold the master for 10 seconds.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
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
			t.Fatalf("dovecot's imap listener did not come up: %s\n%s", out.String(), log)
		}
	}
}

// Home is the home directory of user (DIR/home/USER).
func (d *DovecotIMAP) Home(user string) string { return filepath.Join(d.Dir, "home", user) }

// Chown gives the tree at path to the mail user (d.UID, d.GID).
func (d *DovecotIMAP) Chown(t testing.TB, path string) {
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

// Log returns Dovecot's log so far.
func (d *DovecotIMAP) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Sessions returns the number of this instance's imap processes (one per
// logged-in session) and the sums of their resident memory: rss (VmRSS,
// which counts the shared libraries and binary in every process, so it
// overstates) and pss (the proportional set size of
// /proc/PID/smaps_rollup, which divides shared pages among the processes
// sharing them).
func (d *DovecotIMAP) Sessions() (n int, rss, pss int64) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || exe != "/usr/lib/dovecot/imap" {
			continue
		}
		if procField(pid, "status", "PPid:") != int64(d.Pid) {
			continue
		}
		n++
		rss += procField(pid, "status", "VmRSS:") << 10
		pss += procField(pid, "smaps_rollup", "Pss:") << 10
	}
	return n, rss, pss
}

// procField reads the number after name in /proc/PID/file (0 if absent).
func procField(pid int, file, name string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == name {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}
