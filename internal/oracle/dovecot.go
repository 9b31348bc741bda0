package oracle

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	// A short directory: Dovecot's sockets live under base_dir and
	// socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "dvc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Searchable by Postfix's smtpd (user postfix), which connects to the
	// socket in the tests that run Postfix against it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
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
	verbose := "no"
	if opts.Verbose {
		verbose = "yes"
	}
	checkpassword := ""
	if opts.Checkpassword != "" {
		checkpassword = fmt.Sprintf("passdb {\n  driver = checkpassword\n  args = %s/checkpassword\n}\n", dir)
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
`, dir, mechs, me.Username, grp.Name, me.Uid, me.Gid, verbose, checkpassword)
	files := []struct {
		name, data string
		mode       os.FileMode
	}{{"dovecot.conf", conf, 0o644}, {"passwd", opts.Passwd, 0o644}}
	if opts.Checkpassword != "" {
		files = append(files, struct {
			name, data string
			mode       os.FileMode
		}{"checkpassword", opts.Checkpassword, 0o755})
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"run", "state"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
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
		if c, err := net.Dial("unix", d.Socket); err == nil {
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
			t.Fatalf("dovecot's auth socket did not come up: %s\n%s", out.String(), log)
		}
	}
}

// Log returns Dovecot's log so far.
func (d *Dovecot) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
