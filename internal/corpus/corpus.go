// Package corpus finds the public message corpora that content tests read:
// the SpamAssassin public corpus, enmime's broken-MIME files and CPython's
// email test messages. scripts/fetch-corpora.sh installs them (.ci/run calls
// it); a test that needs a corpus that is missing is skipped on a
// developer's machine and fails under CI=true, like every other real peer.
package corpus

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// Dir is where scripts/fetch-corpora.sh installs the corpora:
// $POSTKIT_CORPORA, or $HOME/.cache/postkit-corpora.
func Dir() string {
	if d := os.Getenv("POSTKIT_CORPORA"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "postkit-corpora")
	}
	return filepath.Join(home, ".cache", "postkit-corpora")
}

// SpamAssassin returns the paths of the SpamAssassin corpus messages
// (6,046 files with an mbox "From " first line and LF endings), sorted.
func SpamAssassin(t testing.TB) []string {
	t.Helper()
	return files(t, filepath.Join(Dir(), "node_modules", "@stdlib", "datasets-spam-assassin", "data"), ".txt")
}

// BrokenMIME returns the paths of enmime's test messages (broken and
// unusual MIME), sorted.
func BrokenMIME(t testing.TB) []string {
	t.Helper()
	return files(t, filepath.Join(Dir(), "enmime", "testdata"), ".raw")
}

// CPythonEmail returns the paths of CPython's email test messages, sorted.
func CPythonEmail(t testing.TB) []string {
	t.Helper()
	return files(t, "/usr/lib/python3.11/test/test_email/data", ".txt")
}

func files(t testing.TB, root, suffix string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), suffix) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil || len(out) == 0 {
		oracle.Unavailable(t, "message corpus %s is missing (run scripts/fetch-corpora.sh): %v", root, err)
		return nil
	}
	sort.Strings(out)
	return out
}

// Message reads a corpus file and returns it as a message with CRLF line
// endings and without the mbox "From " line the SpamAssassin files start
// with: what an SMTP client would send.
func Message(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(string(b), "From ") {
		if i := strings.IndexByte(string(b), '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}
