package mailbox

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// interopMessages are the contents the reader tests store: header-only,
// "From " lines, a missing final newline, non-ASCII UTF-8, long lines.
func interopMessages() []string {
	return []string{
		"Return-Path: <alice@example.com>\nDelivered-To: bob@example.net\nSubject: plain\n\nHello Bob.\n",
		"Subject: from lines\n\nFrom the start of a line\n>From already quoted\n From not at the start\nFromage\n\nFrom after an empty line\n",
		"Subject: no final newline\n\nlast line",
		"Subject: =?UTF-8?Q?gr=C3=BC=C3=9Fe?=\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße aus Köln — ✓\n",
		"Subject: long\n\n" + strings.Repeat("x", 5000) + "\n" + strings.Repeat("From y ", 3000) + "\n",
		"Subject: header only\n",
	}
}

// mboxQuote is what an mboxo writer stores for msg (without the From_ line
// and the separator).
func mboxQuote(msg string) string {
	lines := strings.SplitAfter(msg, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "From ") {
			lines[i] = ">" + l
		}
	}
	s := strings.Join(lines, "")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

type pyMessage struct {
	Key, Subdir, Flags, Info, From, Data string
}

func pyRead(t *testing.T, kind, path string) ([]pyMessage, []string) {
	t.Helper()
	py := oracle.Require(t, "python3")
	out, err := exec.Command(py, "testdata/pyread.py", kind, path).Output()
	if err != nil {
		t.Fatalf("pyread.py %s %s: %v (%s)", kind, path, err, errText(err))
	}
	var res struct {
		Messages []pyMessage
		Folders  []string
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("pyread output: %v", err)
	}
	for i := range res.Messages {
		b, err := base64.StdEncoding.DecodeString(res.Messages[i].Data)
		if err != nil {
			t.Fatal(err)
		}
		res.Messages[i].Data = string(b)
	}
	return res.Messages, res.Folders
}

func errText(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// fillStore delivers and edits messages: INBOX gets every interop message
// (some flagged, one still in new/ after a read-only open) and two folders
// get appended messages. It returns the expected content and flags by key,
// per folder.
func fillStore(t *testing.T, root string, uid, gid int) map[string]map[string]Message {
	t.Helper()
	ctx := context.Background()
	s, err := OpenStore(root, StoreOptions{Create: true, UID: uid, GID: gid})
	if err != nil {
		t.Fatal(err)
	}
	msgs := interopMessages()
	for _, m := range msgs {
		if _, err := DeliverMaildir(ctx, root, strings.NewReader(m), MaildirOptions{UID: uid, GID: gid}); err != nil {
			t.Fatal(err)
		}
	}
	inbox, err := s.OpenFolder(ctx, Inbox, false)
	if err != nil {
		t.Fatal(err)
	}
	flags := []Flags{FlagSeen, FlagFlagged | FlagReplied | FlagSeen, 0, FlagDraft | FlagPassed | FlagTrashed, FlagSeen, 0}
	for i, m := range inbox.Messages() {
		if flags[i] != 0 {
			if _, err := inbox.SetFlags(ctx, m.UID, flags[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	// One more delivery that stays in new/.
	if _, err := DeliverMaildir(ctx, root, strings.NewReader("Subject: unread\n\nstill in new/\n"), MaildirOptions{UID: uid, GID: gid}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSpecialFolders(); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFolder("Archive"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFolder("Archive.2024"); err != nil {
		t.Fatal(err)
	}
	arch, err := s.OpenFolder(ctx, "Archive.2024", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := arch.Append(ctx, strings.NewReader(msgs[0]), FlagSeen|FlagReplied, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.Copy(ctx, 2, arch); err != nil {
		t.Fatal(err)
	}
	sent, _ := s.OpenFolder(ctx, "Sent", false)
	if _, err := inbox.Move(ctx, 5, sent); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]Message{}
	for _, f := range []string{Inbox, "Archive.2024", "Sent"} {
		md, err := s.OpenFolder(ctx, f, true) // read-only: leaves the new/ one
		if err != nil {
			t.Fatal(err)
		}
		want[f] = map[string]Message{}
		for _, m := range md.Messages() {
			want[f][m.Key] = m
		}
	}
	if len(want[Inbox]) != 6 || len(want["Archive.2024"]) != 2 || len(want["Sent"]) != 1 {
		t.Fatalf("store has %d/%d/%d messages", len(want[Inbox]), len(want["Archive.2024"]), len(want["Sent"]))
	}
	return want
}

func fileContent(t *testing.T, root, folder string, m Message) string {
	dir := root
	if folder != Inbox {
		dir = filepath.Join(root, "."+folder)
	}
	b, err := os.ReadFile(filepath.Join(dir, m.Name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPythonReadsMaildir(t *testing.T) {
	root := filepath.Join(t.TempDir(), "Maildir")
	want := fillStore(t, root, 0, 0)
	for folder, msgs := range want {
		dir := root
		if folder != Inbox {
			dir = filepath.Join(root, "."+folder)
		}
		got, folders := pyRead(t, "maildir", dir)
		if folder == Inbox {
			if fmt.Sprint(folders) != "[Archive Archive.2024 Drafts Junk Sent Trash]" {
				t.Errorf("Python lists folders %v", folders)
			}
		}
		if len(got) != len(msgs) {
			t.Fatalf("%s: Python sees %d messages, we wrote %d", folder, len(got), len(msgs))
		}
		for _, p := range got {
			m, ok := msgs[p.Key]
			if !ok {
				t.Errorf("%s: Python key %q is not one of ours", folder, p.Key)
				continue
			}
			if p.Data != fileContent(t, root, folder, m) {
				t.Errorf("%s %s: Python reads different bytes", folder, p.Key)
			}
			wantSub := strings.SplitN(m.Name, "/", 2)[0]
			if p.Subdir != wantSub || p.Flags != m.Flags.String() {
				t.Errorf("%s %s: Python subdir %q flags %q, we have %q %q", folder, p.Key, p.Subdir, p.Flags, wantSub, m.Flags)
			}
		}
	}
	// The original contents, byte for byte (Python's view of INBOX).
	got, _ := pyRead(t, "maildir", root)
	var bodies []string
	for _, p := range got {
		bodies = append(bodies, p.Data)
	}
	all := append(interopMessages(), "Subject: unread\n\nstill in new/\n")
	all = append(all[:4], all[5:]...) // message 5 was moved to Sent
	sort.Strings(bodies)
	sort.Strings(all)
	if fmt.Sprint(bodies) != fmt.Sprint(all) {
		t.Errorf("INBOX contents differ from what was delivered")
	}
}

func TestPythonMbox(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mbox")
	msgs := interopMessages()
	senders := []string{"alice@example.com", "", "a b@example.com", "x@y", "bounce+tag@example.org", "z@z"}
	for i, m := range msgs {
		if err := DeliverMbox(ctx, path, senders[i], strings.NewReader(m), MboxOptions{Create: true, Time: testTime}); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := pyRead(t, "mbox", path)
	if len(got) != len(msgs) {
		t.Fatalf("Python sees %d messages, we wrote %d", len(got), len(msgs))
	}
	f, _ := os.Open(path)
	defer f.Close()
	ours, err := ScanMbox(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(ours) != len(msgs) {
		t.Fatalf("ScanMbox finds %d messages", len(ours))
	}
	for i, p := range got {
		wantFrom := strings.TrimPrefix(FromLine(senders[i], testTime), "From ")
		if p.From != wantFrom || ours[i].From != wantFrom {
			t.Errorf("message %d: From_ %q (Python) %q (ours), want %q", i, p.From, ours[i].From, wantFrom)
		}
		if p.Data != mboxQuote(msgs[i]) {
			t.Errorf("message %d: Python reads\n%q\nwant\n%q", i, p.Data, mboxQuote(msgs[i]))
		}
		var raw, plain bytes.Buffer
		raw.ReadFrom(ours[i].Raw(f))
		plain.ReadFrom(ours[i].Reader(f))
		if raw.String() != p.Data {
			t.Errorf("message %d: Raw differs from Python's", i)
		}
		wantPlain := msgs[i]
		if !strings.HasSuffix(wantPlain, "\n") {
			wantPlain += "\n"
		}
		wantPlain = strings.ReplaceAll(wantPlain, "\n>From already", "\nFrom already") // mboxo is lossy there
		if plain.String() != wantPlain {
			t.Errorf("message %d: Reader gives\n%q\nwant\n%q", i, plain.String(), wantPlain)
		}
	}
}

// ScanMbox reads what Python's mailbox module writes, flags included.
func TestScanPythonWrittenMbox(t *testing.T) {
	py := oracle.Require(t, "python3")
	path := filepath.Join(t.TempDir(), "mbox")
	script := `
import mailbox, sys
mb = mailbox.mbox(sys.argv[1])
m = mailbox.mboxMessage(b"Subject: one\n\nFrom here\nbody\n"); m.set_flags("RAF"); m.set_from("a@example.com", True); mb.add(m)
m = mailbox.mboxMessage(b"Subject: two\n\n\n"); m.set_flags("OD"); mb.add(m)
mb.flush()
`
	if out, err := exec.Command(py, "-c", script, path).CombinedOutput(); err != nil {
		t.Fatalf("python: %v %s", err, out)
	}
	f, _ := os.Open(path)
	defer f.Close()
	msgs, err := ScanMbox(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	if msgs[0].Flags != FlagSeen|FlagReplied|FlagFlagged || msgs[1].Flags != FlagTrashed {
		t.Errorf("flags %v %v, want FRS and T", msgs[0].Flags, msgs[1].Flags)
	}
	var b bytes.Buffer
	b.ReadFrom(msgs[0].Reader(f))
	if !strings.Contains(b.String(), "\n\nFrom here\nbody\n") || !strings.HasPrefix(b.String(), "Subject: one\n") {
		t.Errorf("message 1: %q", b.String())
	}
	b.Reset()
	b.ReadFrom(msgs[1].Reader(f))
	if !strings.HasSuffix(b.String(), "\n\n\n") {
		t.Errorf("message 2 lost its empty lines: %q", b.String())
	}
}

// doveadm runs Dovecot's doveadm on a mail location without a running
// Dovecot: a private config with a static userdb, the user given through
// USER and HOME, and an unprivileged mail_uid (Dovecot refuses root).
func doveadm(t *testing.T, dir, location string, uid int, args ...string) []byte {
	t.Helper()
	bin := oracle.Require(t, "doveadm")
	conf := filepath.Join(dir, "dovecot.conf")
	if _, err := os.Stat(conf); err != nil {
		cfg := fmt.Sprintf("base_dir = %s/run\nstate_dir = %s/state\nlog_path = /dev/stderr\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n", dir, dir)
		if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	full := append([]string{"-c", conf, "-o", fmt.Sprintf("mail_uid=%d", uid), "-o", fmt.Sprintf("mail_gid=%d", uid),
		"-o", "mail_location=" + location, "-f", "json"}, args...)
	cmd := exec.Command(bin, full...)
	cmd.Env = append(os.Environ(), "USER=postkit", "HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("doveadm %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// doveDir makes a directory the unprivileged mail user can use.
func doveDir(t *testing.T) (string, int) {
	dir, err := os.MkdirTemp("", "postkit-mailbox-dovecot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	uid := os.Geteuid()
	if uid == 0 {
		uid = 65534
		os.Chown(dir, uid, uid)
	}
	os.Chmod(dir, 0o755)
	return dir, uid
}

// dovecotFlags is how Dovecot 2.3 shows maildir flags over IMAP: P
// (passed) has no system flag and is not shown.
func dovecotFlags(f Flags) string {
	var out []string
	for _, p := range []struct {
		f Flags
		s string
	}{{FlagReplied, `\Answered`}, {FlagFlagged, `\Flagged`}, {FlagTrashed, `\Deleted`}, {FlagSeen, `\Seen`}, {FlagDraft, `\Draft`}} {
		if f&p.f != 0 {
			out = append(out, p.s)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestDoveadmReadsMaildir(t *testing.T) {
	dir, uid := doveDir(t)
	root := filepath.Join(dir, "Maildir")
	want := fillStore(t, root, uid, uid)
	loc := "maildir:" + root + ":INDEX=MEMORY"
	var boxes []struct{ Mailbox string }
	json.Unmarshal(doveadm(t, dir, loc, uid, "mailbox", "list"), &boxes)
	var names []string
	for _, b := range boxes {
		names = append(names, b.Mailbox)
	}
	sort.Strings(names)
	if fmt.Sprint(names) != "[Archive Archive.2024 Drafts INBOX Junk Sent Trash]" {
		t.Errorf("doveadm mailbox list: %v", names)
	}
	for folder, msgs := range want {
		var got []struct{ UID, Flags, GUID, Text string }
		if err := json.Unmarshal(doveadm(t, dir, loc, uid, "fetch", "uid flags guid text", "mailbox", folder, "all"), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(msgs) {
			t.Fatalf("%s: doveadm sees %d messages, we wrote %d", folder, len(got), len(msgs))
		}
		for _, d := range got {
			m, ok := msgs[d.GUID]
			if !ok {
				t.Errorf("%s: doveadm GUID %q is not one of our keys", folder, d.GUID)
				continue
			}
			if d.Text != fileContent(t, root, folder, m) {
				t.Errorf("%s %s: doveadm reads different text:\n%q", folder, d.GUID, d.Text)
			}
			var fl []string
			for _, f := range strings.Fields(d.Flags) {
				if f != `\Recent` {
					fl = append(fl, f)
				}
			}
			sort.Strings(fl)
			if strings.Join(fl, " ") != dovecotFlags(m.Flags) {
				t.Errorf("%s %s: doveadm flags %q, ours %q", folder, d.GUID, d.Flags, m.Flags)
			}
		}
	}
}

func TestDoveadmReadsMbox(t *testing.T) {
	dir, uid := doveDir(t)
	ctx := context.Background()
	path := filepath.Join(dir, "inbox.mbox")
	msgs := interopMessages()
	for _, m := range msgs {
		if err := DeliverMbox(ctx, path, "alice@example.com", strings.NewReader(m), MboxOptions{Create: true, UID: uid, GID: uid, Time: testTime}); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "mail"), 0o755)
	os.Chown(filepath.Join(dir, "mail"), uid, uid)
	loc := "mbox:" + filepath.Join(dir, "mail") + ":INBOX=" + path + ":INDEX=MEMORY"
	var got []struct{ UID, Text string }
	if err := json.Unmarshal(doveadm(t, dir, loc, uid, "fetch", "uid text", "mailbox", "INBOX", "all"), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("doveadm sees %d messages, we wrote %d", len(got), len(msgs))
	}
	for i, d := range got {
		// Dovecot keeps the ">From " quoting, and hides no header we wrote.
		if d.Text != mboxQuote(msgs[i]) {
			t.Errorf("message %d: doveadm text\n%q\nwant\n%q", i, d.Text, mboxQuote(msgs[i]))
		}
	}
}

// Keywords set by postkit show in Dovecot, and Dovecot's show in postkit:
// both use dovecot-keywords and the letters a-z.
func TestDoveadmKeywords(t *testing.T) {
	ctx := context.Background()
	dir, uid := doveDir(t)
	root := filepath.Join(dir, "Maildir")
	for i := 0; i < 2; i++ {
		if _, err := DeliverMaildir(ctx, root, strings.NewReader(fmt.Sprintf("Subject: %d\n\nx\n", i)), MaildirOptions{Create: true, UID: uid, GID: uid}); err != nil {
			t.Fatal(err)
		}
	}
	md, err := OpenMaildir(ctx, root, MaildirOpenOptions{UID: uid, GID: uid})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.SetFlags(ctx, 1, FlagSeen); err != nil {
		t.Fatal(err)
	}
	m, err := md.SetKeywords(ctx, 1, []string{"$Forwarded", "Junk"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(m.Name, ":2,Sab") || fmt.Sprint(m.Keywords) != "[$Forwarded Junk]" {
		t.Errorf("after SetKeywords: %+v", m)
	}
	loc := "maildir:" + root + ":INDEX=MEMORY"
	var got []struct{ GUID, Flags string }
	json.Unmarshal(doveadm(t, dir, loc, uid, "fetch", "guid flags", "mailbox", "INBOX", "all"), &got)
	if len(got) != 2 || got[0].GUID != m.Key || got[0].Flags != `\Seen \Recent $Forwarded Junk` && got[0].Flags != `\Seen $Forwarded Junk` {
		t.Fatalf("doveadm sees %+v", got)
	}
	// Dovecot adds a keyword to message 2 and one to message 1.
	doveadm(t, dir, loc, uid, "flags", "add", "Important", "mailbox", "INBOX", "guid", got[1].GUID)
	doveadm(t, dir, loc, uid, "flags", "add", "Junk", "mailbox", "INBOX", "guid", got[1].GUID)
	ch, err := md.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Flags) != 1 || ch.Flags[0].UID != 2 || fmt.Sprint(ch.Flags[0].Keywords) != "[Junk Important]" && fmt.Sprint(ch.Flags[0].Keywords) != "[Important Junk]" {
		t.Fatalf("postkit sees Dovecot's change as %+v", ch)
	}
	all, _ := md.Keywords()
	if fmt.Sprint(all) != "[$Forwarded Junk Important]" {
		t.Errorf("keywords %v", all)
	}
	// Removing keywords keeps the flags.
	m, err = md.SetKeywords(ctx, 1, nil)
	if err != nil || !strings.HasSuffix(m.Name, ":2,S") || m.Keywords != nil {
		t.Errorf("cleared keywords: %+v %v", m, err)
	}
}
