// Package oracle runs Debian's Postfix commands (postmap, postalias,
// postconf) as the reference that postkit's differential tests compare
// against. Each test gets a scratch config directory, so /etc/postfix is
// never read or touched.
//
// When a command is missing, tests are skipped on a developer's machine and
// fail under CI (CI=true): the oracle must run in CI, never silently not.
package oracle

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Dirs Postfix installs its commands into.
var searchPath = []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin"}

// Require returns the path of the Postfix command name, or skips the test
// (fails it when CI=true) when it is not installed.
func Require(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range searchPath {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	Unavailable(t, "oracle: %s is not installed (.ci/run installs it with apt-get)", name)
	return ""
}

// Unavailable ends a test whose peer (a command, a server, a library) is
// missing: it skips the test with the reason on a developer's machine and
// fails it under CI=true, where .ci/run must have provided everything.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// ConfigDir makes a scratch Postfix config directory holding main.cf with
// "compatibility_level = 3.6" followed by extra, and an empty master.cf.
// The directory is world-searchable, as Postfix's commands need.
func ConfigDir(t testing.TB, extra string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	main := "compatibility_level = 3.6\n" + extra
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	Backdate(t, filepath.Join(dir, "main.cf"), filepath.Join(dir, "master.cf"))
	return dir
}

// Backdate sets the modification time of files ten seconds into the past.
// Postfix's commands will not read a configuration file (main.cf, an SQL
// table's .cf) that changed in the last two seconds: they wait and retry,
// which costs each call about two seconds in a test that has just written it.
func Backdate(t testing.TB, paths ...string) {
	t.Helper()
	past := time.Now().Add(-10 * time.Second)
	for _, p := range paths {
		if err := os.Chtimes(p, past, past); err != nil {
			t.Fatal(err)
		}
	}
}

// Result is what a command printed and its exit status.
type Result struct {
	Stdout, Stderr []byte
	Code           int
}

// Run runs the Postfix command name (found with Require) with args, feeding
// stdin, and returns its output and exit code. A command that cannot be
// started fails the test.
func Run(t testing.TB, stdin []byte, name string, args ...string) Result {
	t.Helper()
	res, err := Exec(Require(t, name), stdin, args...)
	if err != nil {
		t.Fatalf("oracle: run %s %v: %v", name, args, err)
	}
	return res
}

// Exec runs the command at path (from Require) with args, feeding stdin,
// in the C locale. The error is only for a command that could not be run;
// a non-zero exit status is in Result.Code. It does not touch a testing.T,
// so it may be called from any goroutine.
func Exec(path string, stdin []byte, args ...string) (Result, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "LANG=C", "LC_ALL=C")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		return res, err
	}
	return res, nil
}

// Diff describes the first ten lines where got (postkit's output) differs
// from want (Postfix's), or returns "" when they are the same.
func Diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i, n := 0, 0; i < max(len(w), len(g)) && n < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d: postmap %q, postkit %q\n", i+1, wl, gl)
			n++
		}
	}
	return b.String()
}
