package oracle

// Local submission through a private Postfix: sendmail -> postdrop ->
// maildrop -> pickup -> cleanup. The harness's master.cf leaves pickup
// out (see droppedServices); EnablePickup puts it back for the tests of
// postkit's own sendmail and pickup.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EnablePickup adds Postfix's pickup service to the running instance and
// makes Postfix's sendmail usable with "-C p.ConfigDir".
//
// Postfix's postdrop is set-gid postdrop; a set-gid program refuses a
// configuration directory that the default main.cf does not list in
// alternate_config_directories, and the harness never touches
// /etc/postfix. So the instance gets its own command_directory holding a
// copy of postdrop without the set-gid bit (the tests run as root, who
// may write the maildrop anyway) and links to Postfix's other commands.
//
// It edits the instance's main.cf directly: a later Reconfigure drops the
// command_directory setting again.
func (p *Postfix) EnablePickup(t testing.TB) {
	t.Helper()
	postfix := Require(t, "postfix")
	sendmail := Require(t, "sendmail")
	postdrop := Require(t, "postdrop")
	bin := filepath.Join(p.Dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	if err := copyFile(postdrop, filepath.Join(bin, "postdrop"), 0o755); err != nil {
		t.Fatalf("oracle: copy postdrop: %v", err)
	}
	// The other commands (postsuper, postqueue, postlog...) as links,
	// for "postfix reload" and anything sendmail runs.
	sysBin := filepath.Dir(sendmail)
	ents, err := os.ReadDir(sysBin)
	if err != nil {
		t.Fatalf("oracle: %v", err)
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, "post") || n == "postdrop" {
			continue
		}
		if err := os.Symlink(filepath.Join(sysBin, n), filepath.Join(bin, n)); err != nil && !os.IsExist(err) {
			t.Fatalf("oracle: %v", err)
		}
	}

	// master.cf: Postfix's own pickup entry, without chroot like every
	// other service of the instance.
	system, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatalf("oracle: read Postfix's master.cf: %v", err)
	}
	entry := ""
	for line := range strings.SplitSeq(string(system), "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && f[0] == "pickup" && f[1] == "unix" {
			f[4] = "n"
			entry = strings.Join(f, " ") + "\n"
			break
		}
	}
	if entry == "" {
		t.Fatalf("oracle: Postfix's master.cf has no pickup service")
	}
	mpath := filepath.Join(p.ConfigDir, "master.cf")
	mcf, err := os.ReadFile(mpath)
	if err != nil {
		t.Fatalf("oracle: %v", err)
	}
	if !strings.Contains(string(mcf), "\npickup ") {
		if err := os.WriteFile(mpath, append(mcf, entry...), 0o644); err != nil {
			t.Fatalf("oracle: %v", err)
		}
	}
	if !strings.Contains(p.mainCF, "\ncommand_directory = "+bin+"\n") {
		p.mainCF += "command_directory = " + bin + "\n"
	}
	cpath := filepath.Join(p.ConfigDir, "main.cf")
	if err := os.WriteFile(cpath, []byte(p.mainCF), 0o644); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	if err := backdate(mpath, cpath); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	if out, err := p.postfixCmd(postfix, "reload"); err != nil {
		t.Fatalf("oracle: postfix reload: %v\n%s%s", err, out, p.logTail(20))
	}
	// The master starts pickup on reload; its first scan of the maildrop
	// follows at once.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.Log(), "postfix/pickup[") && !p.hasPickup() {
		if time.Now().After(deadline) {
			t.Fatalf("oracle: pickup did not start\n%s", p.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hasPickup says whether the master has a pickup child.
func (p *Postfix) hasPickup() bool {
	master, err := p.masterPID()
	if err != nil {
		return false
	}
	for _, pid := range childPIDs(master) {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && strings.HasPrefix(filepath.Base(strings.SplitN(string(cmd), "\x00", 2)[0]), "pickup") {
			return true
		}
	}
	return false
}

// Sendmail runs Postfix's sendmail with "-C p.ConfigDir" and args,
// feeding stdin. EnablePickup must have run.
func (p *Postfix) Sendmail(t testing.TB, stdin []byte, args ...string) Result {
	t.Helper()
	sendmail := Require(t, "sendmail")
	res, err := Exec(sendmail, stdin, append([]string{"-C", p.ConfigDir}, args...)...)
	if err != nil {
		t.Fatalf("oracle: run sendmail: %v", err)
	}
	return res
}

// WaitLog waits until the instance's log has a line containing every one
// of substrs, and returns that line.
func (p *Postfix) WaitLog(t testing.TB, timeout time.Duration, substrs ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for line := range strings.SplitSeq(p.Log(), "\n") {
			all := true
			for _, s := range substrs {
				if !strings.Contains(line, s) {
					all = false
					break
				}
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("oracle: no log line with %q within %v\n%s", substrs, timeout, p.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Postcat runs "postcat -c CONFIG ARGS..." (for example -q QUEUEID) on
// the instance's queue.
func (p *Postfix) Postcat(t testing.TB, args ...string) Result {
	t.Helper()
	postcat := Require(t, "postcat")
	res, err := Exec(postcat, nil, append([]string{"-c", p.ConfigDir}, args...)...)
	if err != nil {
		t.Fatalf("oracle: run postcat: %v", err)
	}
	return res
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}
