package local

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// unprivilegedTests run again as an ordinary user by TestUnprivileged.
var unprivilegedTests = []string{
	"TestHomeMaildir", "TestSpoolMbox", "TestSpoolMaildirAndHomeMbox", "TestAliases", "TestAliasSelfToMailbox",
	"TestOwnerAlias", "TestDotForward", "TestLuserRelay", "TestMailboxCommand", "TestCommandStatus",
	"TestMailboxSizeLimit", "TestMailboxLock", "TestCommandDirectoryAndEnvironment", "TestPythonReads", "Example",
	"TestUnprivilegedIdentity",
}

// TestUnprivilegedIdentity checks, in the unprivileged run, that the
// process really is not root and that the agent knows it.
func TestUnprivilegedIdentity(t *testing.T) {
	h := newHarness(t, "", "")
	if os.Getenv("POSTKIT_LOCAL_UNPRIVILEGED") != "" && (os.Geteuid() == 0 || h.agent.root) {
		t.Fatalf("unprivileged run with euid %d, agent root=%v", os.Geteuid(), h.agent.root)
	}
	if h.agent.root != (os.Geteuid() == 0) {
		t.Errorf("agent root=%v, euid %d", h.agent.root, os.Geteuid())
	}
}

// TestUnprivileged runs the delivery tests again as nobody when the suite
// runs as root (as CI does), so that both of the agent's modes are
// tested: as root it switches to each user's ids; otherwise it delivers
// everything as the process's own user (examples/mailserver's case).
func TestUnprivileged(t *testing.T) {
	t.Parallel()
	if os.Getenv("POSTKIT_LOCAL_UNPRIVILEGED") != "" {
		t.Skip("this is the unprivileged run")
	}
	if os.Geteuid() != 0 {
		t.Skip("the suite already runs unprivileged")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := openDir(t)
	bin := filepath.Join(dir, "local.test")
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	dst.Close()
	tmp := filepath.Join(dir, "tmp")
	mkdirMode(t, tmp, 0o700)
	if err := os.Chown(tmp, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^("+strings.Join(unprivilegedTests, "|")+")$", "-test.v", "-test.count=1")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CI=") && !strings.HasPrefix(kv, "TMPDIR=") && !strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "TMPDIR="+tmp, "HOME="+tmp, "POSTKIT_LOCAL_UNPRIVILEGED=1")
	cmd.Dir = tmp
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged run: %v\n%s", err, out)
	}
	for _, name := range unprivilegedTests {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass unprivileged:\n%s", name, out)
		}
	}
}
