package local

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/queue"
)

// TestDoveadmReads checks that Dovecot's doveadm reads the Maildir and the
// mbox the agent writes: every message, with its headers and body.
func TestDoveadmReads(t *testing.T) {
	bin := oracle.Require(t, "doveadm")
	h := newHarness(t, "home_mailbox = Maildir/\n", "spoolbox: {DIR}/files/mbox\n")
	senders := []string{"alice@example.org", "", "carol@example.net"}
	for _, s := range senders {
		for _, r := range h.deliver(testMessage, s, "bob@example.net", "spoolbox@example.net") {
			if r.Outcome != queue.Delivered {
				t.Fatalf("%+v", r)
			}
		}
	}
	uid, gid := testIDs()
	if os.Geteuid() == 0 {
		// /file deliveries of a root-owned alias table run as
		// default_privs, which is nobody here too.
		os.Chown(h.dir+"/files", uid, gid)
	}
	conf := filepath.Join(h.dir, "dovecot.conf")
	writeFile(t, conf, fmt.Sprintf("base_dir = %s/run\nstate_dir = %s/state\nlog_path = /dev/stderr\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n", h.dir, h.dir), 0o644)
	fetch := func(location string) []struct{ Hdr, Body string } {
		t.Helper()
		cmd := exec.Command(bin, "-c", conf, "-o", fmt.Sprintf("mail_uid=%d", uid), "-o", fmt.Sprintf("mail_gid=%d", gid),
			"-o", "mail_location="+location, "-f", "json", "fetch", "hdr body", "mailbox", "INBOX", "all")
		cmd.Env = append(os.Environ(), "USER=bob", "HOME="+h.dir+"/home/bob")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("doveadm fetch %s: %v\n%s", location, err, stderr.String())
		}
		var got []struct{ Hdr, Body string }
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("doveadm output: %v\n%s", err, out)
		}
		return got
	}
	wantBody := "Hello.\nFrom here on, quoting.\n>From stays.\n"
	for _, loc := range []string{
		"maildir:" + h.dir + "/home/bob/Maildir:INDEX=MEMORY",
		"mbox:" + h.dir + "/files/mboxdir:INBOX=" + h.dir + "/files/mbox:INDEX=MEMORY",
	} {
		got := fetch(loc)
		if len(got) != len(senders) {
			t.Fatalf("%s: doveadm sees %d messages, want %d", loc, len(got), len(senders))
		}
		for i, m := range got {
			// doveadm gives the bytes as stored (LF).
			m.Hdr, m.Body = strings.ReplaceAll(m.Hdr, "\r\n", "\n"), strings.ReplaceAll(m.Body, "\r\n", "\n")
			rp := "<" + senders[i] + ">"
			if !strings.HasPrefix(m.Hdr, "Return-Path: "+rp+"\n") || !strings.Contains(m.Hdr, "\nSubject: test\n") {
				t.Errorf("%s message %d header:\n%s", loc, i, m.Hdr)
			}
			// Dovecot undoes no mboxo quoting: the body is as stored,
			// with the quoting an mbox needs.
			want := wantBody
			if strings.HasPrefix(loc, "mbox:") {
				want = strings.Replace(wantBody, "\nFrom here", "\n>From here", 1)
			}
			if m.Body != want {
				t.Errorf("%s message %d body %q, want %q", loc, i, m.Body, want)
			}
		}
	}
}
