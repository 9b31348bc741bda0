// Package dkimpy checks DKIM signatures with dkimpy, the Python library
// behind Debian's dkimverify (python3-dkim): an independent verifier for
// the tests of package dkim and of the milter client. Key lookups are
// answered from a map, so no DNS is asked.
package dkimpy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// Case is one message and whether it must verify.
type Case struct {
	Msg  string
	Want bool
}

// Verify runs dkim.verify on every message in one Python process,
// answering TXT lookups from records (name without the trailing dot ->
// record text), and fails the test for each result that differs from
// Want. A missing /usr/bin/python3 or python3-dkim skips the test locally
// and fails it under CI=true.
func Verify(t testing.TB, records map[string]string, cases ...Case) {
	t.Helper()
	py := "/usr/bin/python3" // Debian's, where python3-dkim lives
	if _, err := os.Stat(py); err != nil {
		oracle.Unavailable(t, "/usr/bin/python3 is not installed")
		return
	}
	dir := t.TempDir()
	args := []string{"-I", "-c", ""}
	for i, c := range cases {
		path := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(path, []byte(c.Msg), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	var recs strings.Builder
	for k, v := range records {
		fmt.Fprintf(&recs, "%q: %q,\n", k+".", v)
	}
	args[2] = `import sys
try:
    import dkim
except ImportError:
    print("NODKIM"); sys.exit(0)
records = {` + recs.String() + `}
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    return records.get(name, "").encode() or None
for path in sys.argv[1:]:
    msg = open(path, "rb").read()
    print("PASS" if dkim.verify(msg, dnsfunc=dnsfunc) else "FAIL")
`
	// -I keeps a checkout directory named "dkim" from shadowing the module.
	cmd := exec.Command(py, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python dkim: %v\n%s", err, out)
	}
	res := strings.Fields(string(out))
	if len(res) == 1 && res[0] == "NODKIM" {
		oracle.Unavailable(t, "python3-dkim is not installed")
		return
	}
	if len(res) != len(cases) {
		t.Fatalf("python dkim said %q for %d messages", out, len(cases))
	}
	for i, c := range cases {
		if (res[i] == "PASS") != c.Want {
			t.Errorf("python dkim.verify(message %d) = %s, want pass=%v", i, res[i], c.Want)
		}
	}
}
