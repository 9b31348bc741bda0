package local

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/queue"
)

// pyReader lists an mbox or a Maildir with Python's mailbox module: one
// line per message with its From_ sender (mbox), Return-Path, Delivered-To,
// Subject and the last body line.
const pyReader = `
import mailbox, sys
kind, path = sys.argv[1], sys.argv[2]
box = mailbox.mbox(path, create=False) if kind == "mbox" else mailbox.Maildir(path, factory=None, create=False)
for key in sorted(box.keys()):
    m = box[key]
    sender = m.get_from().split("  ")[0] if kind == "mbox" else "-"
    body = m.get_payload().rstrip("\n").split("\n")
    print(sender, m["Return-Path"], m["Delivered-To"], m["Subject"], repr(body[-1]), repr(body[1]))
`

// TestPythonReads checks that Python's mailbox module reads the mbox and
// Maildir files the agent writes, message by message.
func TestPythonReads(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		oracle.Unavailable(t, "python3 is not installed")
	}
	h := newHarness(t, "", "md: {DIR}/files/md/\n")
	for _, sender := range []string{"alice@example.org", "", "bob@example.net"} {
		res := h.deliver(testMessage, sender, "carol@example.net", "md@example.net")
		for _, r := range res {
			if r.Outcome != queue.Delivered {
				t.Fatalf("%+v", r)
			}
		}
	}
	run := func(kind, path string) string {
		out, err := exec.Command(py, "-c", pyReader, kind, path).CombinedOutput()
		if err != nil {
			t.Fatalf("python3 %s %s: %v\n%s", kind, path, err, out)
		}
		return string(out)
	}
	mbox := run("mbox", filepath.Join(h.dir, "spool/carol"))
	wantMbox := `alice@example.org <alice@example.org> carol@example.net test '>From stays.' '>From here on, quoting.'
MAILER-DAEMON <> carol@example.net test '>From stays.' '>From here on, quoting.'
bob@example.net <bob@example.net> carol@example.net test '>From stays.' '>From here on, quoting.'
`
	if mbox != wantMbox {
		t.Errorf("python mbox:\n%s\nwant\n%s", mbox, wantMbox)
	}
	md := run("maildir", filepath.Join(h.dir, "files/md"))
	if lines := strings.Split(strings.TrimSpace(md), "\n"); len(lines) != 3 {
		t.Fatalf("python maildir:\n%s", md)
	}
	for _, l := range strings.Split(strings.TrimSpace(md), "\n") {
		if !strings.HasSuffix(l, " md@example.net test '>From stays.' 'From here on, quoting.'") {
			t.Errorf("python maildir line %q", l)
		}
	}
	if !strings.Contains(md, "- <> md@example.net") {
		t.Errorf("null sender missing:\n%s", md)
	}
}
