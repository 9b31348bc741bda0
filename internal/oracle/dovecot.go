package oracle

import (
	"fmt"
	"os/user"
	"path/filepath"
	"testing"
)

// DovecotOptions configure a private Dovecot auth service.
type DovecotOptions struct {
	// Mechanisms is auth_mechanisms ("plain login cram-md5" when empty).
	Mechanisms string
	// Passwd is the passwd-file of the passdb.
	Passwd string
	// Checkpassword, when set, is a script run as a second passdb
	// (driver = checkpassword) for users the passwd-file does not know.
	Checkpassword string
	// Verbose sets auth_verbose and auth_debug (off for benchmarks, where
	// writing the log costs Dovecot more than the protocol).
	Verbose bool
}

// Dovecot is a private `dovecot -F` running only its auth service.
type Dovecot struct {
	Dir     string // everything: config, sockets, state, log
	Socket  string // the auth-client socket (mode 0666, reachable by Postfix's smtpd)
	LogPath string
}

// StartDovecotAuth starts Dovecot with its own base_dir, no mail protocols
// and the passdbs of opts, as the current user, and stops it when the test
// ends. A missing dovecot skips the test locally and fails it under CI.
func StartDovecotAuth(t testing.TB, opts DovecotOptions) *Dovecot {
	t.Helper()
	bin := Require(t, "dovecot")
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Fatal(err)
	}
	mechs := opts.Mechanisms
	if mechs == "" {
		mechs = "plain login cram-md5"
	}
	dir := newDovecotDir(t, "dvc", "run", "state")
	files := []dovecotFile{{"passwd", opts.Passwd, 0o644}}
	checkpassword := ""
	if opts.Checkpassword != "" {
		checkpassword = fmt.Sprintf("passdb {\n  driver = checkpassword\n  args = %s/checkpassword\n}\n", dir)
		files = append(files, dovecotFile{"checkpassword", opts.Checkpassword, 0o755})
	}
	d := &Dovecot{Dir: dir, Socket: filepath.Join(dir, "auth-client"), LogPath: filepath.Join(dir, "log")}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/log
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = %[2]s
auth_failure_delay = 0
auth_verbose = %[7]s
auth_debug = %[7]s
default_internal_user = %[3]s
default_internal_group = %[4]s
default_login_user = %[3]s
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
%[8]suserdb {
  driver = static
  args = uid=%[5]s gid=%[6]s home=%[1]s/home/%%u
}
service auth {
  unix_listener %[1]s/auth-client {
    mode = 0666
  }
}
`, dir, mechs, me.Username, grp.Name, me.Uid, me.Gid, yesNo(opts.Verbose), checkpassword)
	writeDovecotFiles(t, dir, append(files, dovecotFile{"dovecot.conf", conf, 0o644})...)
	runDovecot(t, bin, dir, "unix", d.Socket, "auth socket")
	return d
}

// Log returns Dovecot's log so far.
func (d *Dovecot) Log(t testing.TB) string { return dovecotLog(t, d.LogPath) }
