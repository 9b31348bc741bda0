package oracle

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
	if opts.Passwd == "" {
		t.Fatal("oracle: DovecotIMAPOptions.Passwd is required")
	}
	if opts.MailLocation == "" {
		opts.MailLocation = "maildir:~/Maildir"
	}
	var extra string
	if opts.ProcessLimit > 0 {
		// Every session also holds connections to the log, config and
		// anvil services: raise their client limits with it.
		extra += fmt.Sprintf("default_client_limit = %d\nservice imap {\n  process_limit = %d\n}\n", 2*opts.ProcessLimit+200, opts.ProcessLimit)
	}
	if opts.MaxUserIPConnections > 0 {
		extra += fmt.Sprintf("protocol imap {\n  mail_max_userip_connections = %d\n}\n", opts.MaxUserIPConnections)
	}
	m := startDovecotMail(t, dovecotMailConfig{
		proto: "imap", prefix: "dvi",
		passwd: opts.Passwd, mailLocation: opts.MailLocation,
		certFile: opts.CertFile, keyFile: opts.KeyFile,
		disablePlaintextAuth: opts.DisablePlaintextAuth,
		extra:                extra + opts.Extra,
	})
	d := &DovecotIMAP{Dir: m.dir, Addr: m.addr, TLSAddr: m.tlsAddr, LogPath: m.logPath, UID: m.uid, GID: m.gid, Pid: m.pid}
	// The homes: made before any client can log in, as the caller has
	// not had the address yet.
	for _, l := range strings.Split(opts.Passwd, "\n") {
		name, _, ok := strings.Cut(l, ":")
		if !ok || name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
			continue
		}
		h := d.Home(name)
		if err := os.MkdirAll(h, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(h, d.UID, d.GID); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// Home is the home directory of user (DIR/home/USER).
func (d *DovecotIMAP) Home(user string) string { return filepath.Join(d.Dir, "home", user) }

// Chown gives the tree at path to the mail user (d.UID, d.GID).
func (d *DovecotIMAP) Chown(t testing.TB, path string) { chownTree(t, path, d.UID, d.GID) }

// Log returns Dovecot's log so far.
func (d *DovecotIMAP) Log(t testing.TB) string { return dovecotLog(t, d.LogPath) }

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
