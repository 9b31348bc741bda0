package oracle

import "testing"

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
func (d *DovecotPOP3) Chown(t testing.TB, path string) { chownTree(t, path, d.UID, d.GID) }

// StartDovecotPOP3 starts Dovecot 2.3 with only the pop3 protocol, its own
// base_dir and listeners on 127.0.0.1, the passwd-file passdb of opts and
// a static userdb with the current user's uid and gid (nobody's when
// running as root: Dovecot will not run mail processes as root), and
// stops it when the test ends. The login processes run as dovenull and the
// internal ones as dovecot, as Debian installs them. A missing dovecot or
// pop3 binary skips the test locally and fails it under CI.
func StartDovecotPOP3(t testing.TB, opts DovecotPOP3Options) *DovecotPOP3 {
	t.Helper()
	m := startDovecotMail(t, dovecotMailConfig{
		proto: "pop3", prefix: "dvp",
		passwd: opts.Passwd, mailLocation: opts.MailLocation,
		certFile: opts.CertFile, keyFile: opts.KeyFile,
		disablePlaintextAuth: opts.DisablePlaintextAuth,
		extra:                "pop3_lock_session = " + yesNo(opts.LockSession) + "\n" + opts.Extra,
	})
	return &DovecotPOP3{Dir: m.dir, Addr: m.addr, TLSAddr: m.tlsAddr, LogPath: m.logPath, UID: m.uid, GID: m.gid}
}

// Log returns Dovecot's log so far.
func (d *DovecotPOP3) Log(t testing.TB) string { return dovecotLog(t, d.LogPath) }
