package mailbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func deliverN(t *testing.T, dir string, id string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := DeliverMaildir(context.Background(), dir, strings.NewReader(testMessage(id, i)), MaildirOptions{Create: true}); err != nil {
			t.Fatal(err)
		}
	}
}

func readAllMsg(t *testing.T, md *Maildir, uid uint32) string {
	t.Helper()
	f, _, err := md.Open(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	return string(b)
}

func uidsOf(msgs []Message) []uint32 {
	var out []uint32
	for _, m := range msgs {
		out = append(out, m.UID)
	}
	return out
}

func TestMaildirUIDsStable(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "Maildir")
	deliverN(t, dir, "a", 3)
	md, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := md.Messages()
	if got := uidsOf(msgs); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("UIDs %v, want [1 2 3]", got)
	}
	for _, m := range msgs {
		if !m.Recent || !strings.HasPrefix(m.Name, "cur/") || !strings.HasSuffix(m.Name, ":2,") {
			t.Errorf("message %+v: want moved to cur/ with ':2,' and Recent", m)
		}
	}
	if names, _ := readNames(filepath.Join(dir, "new")); len(names) != 0 {
		t.Errorf("new/ still holds %v", names)
	}
	validity := md.UIDValidity()
	bodies := map[uint32]string{}
	for _, m := range msgs {
		bodies[m.UID] = readAllMsg(t, md, m.UID)
		if int64(len(bodies[m.UID])) != m.Size {
			t.Errorf("UID %d: Size %d, file has %d bytes", m.UID, m.Size, len(bodies[m.UID]))
		}
	}
	// Flags, expunge, more deliveries; then reopen: the same UIDs.
	if _, err := md.SetFlags(ctx, 2, FlagSeen|FlagFlagged); err != nil {
		t.Fatal(err)
	}
	if err := md.Expunge(ctx, 1); err != nil {
		t.Fatal(err)
	}
	deliverN(t, dir, "b", 2)
	ch, err := md.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(uidsOf(ch.New)) != "[4 5]" || len(ch.Expunged) != 0 {
		t.Errorf("Sync changes %+v, want new 4 and 5", ch)
	}
	md2, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if md2.UIDValidity() != validity || md2.UIDNext() != 6 {
		t.Errorf("reopened: validity %d next %d, want %d and 6", md2.UIDValidity(), md2.UIDNext(), validity)
	}
	if got := uidsOf(md2.Messages()); fmt.Sprint(got) != "[2 3 4 5]" {
		t.Fatalf("reopened UIDs %v", got)
	}
	for uid, want := range bodies {
		if uid == 1 {
			continue
		}
		if got := readAllMsg(t, md2, uid); got != want {
			t.Errorf("UID %d content changed", uid)
		}
	}
	m2, _ := md2.Message(2)
	if m2.Flags != FlagSeen|FlagFlagged || !strings.HasSuffix(m2.Name, ":2,FS") || m2.Recent {
		t.Errorf("UID 2 after reopen: %+v", m2)
	}
	// A lost uidlist starts a new UIDVALIDITY.
	os.Remove(filepath.Join(dir, UIDListName))
	md3, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if md3.UIDValidity() <= validity {
		t.Errorf("UIDVALIDITY kept after the uidlist was lost")
	}
	if ch, err := md2.Sync(ctx); err != nil || len(ch.Expunged) != 4 || len(ch.New) != 4 {
		t.Errorf("after UIDVALIDITY change a session sees %+v %v, want all expunged and renumbered", ch, err)
	}
}

func TestMaildirCorruptUIDList(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "Maildir")
	deliverN(t, dir, "a", 2)
	md, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := md.UIDValidity()
	os.WriteFile(filepath.Join(dir, UIDListName), []byte("postkit-uidlist 1 V5 N3\n2 x\n1 y\n"), 0o600)
	md2, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if md2.UIDValidity() == 5 || len(md2.Messages()) != 2 {
		t.Errorf("corrupt uidlist: validity %d (old %d), %d messages", md2.UIDValidity(), old, len(md2.Messages()))
	}
}

func TestMaildirUIDsExhausted(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "Maildir")
	deliverN(t, dir, "a", 2)
	md, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := md.Messages()[0].Key
	os.WriteFile(filepath.Join(dir, UIDListName), []byte("postkit-uidlist 1 V5 N4294967295\n4294967294 "+key+"\n"), 0o600)
	md2, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if md2.UIDValidity() <= 5 || fmt.Sprint(uidsOf(md2.Messages())) != "[1 2]" || md2.Messages()[0].Key != key {
		t.Errorf("after UID exhaustion: validity %d, UIDs %v", md2.UIDValidity(), uidsOf(md2.Messages()))
	}
}

func TestMaildirReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "Maildir")
	deliverN(t, dir, "a", 2)
	md, err := OpenMaildir(ctx, dir, MaildirOpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Messages()) != 2 {
		t.Fatalf("%d messages", len(md.Messages()))
	}
	if names, _ := readNames(filepath.Join(dir, "new")); len(names) != 2 {
		t.Errorf("read-only open moved new mail: new/ has %v", names)
	}
	if _, err := md.SetFlags(ctx, 1, FlagSeen); err == nil {
		t.Error("SetFlags on a read-only maildir succeeded")
	}
	if got := readAllMsg(t, md, 1); !strings.HasPrefix(got, "Subject: a 0") {
		t.Errorf("content %q", got)
	}
	// A writer later moves them; the UIDs stay.
	rw, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(uidsOf(rw.Messages())) != "[1 2]" {
		t.Errorf("UIDs %v", uidsOf(rw.Messages()))
	}
	if got := readAllMsg(t, md, 2); !strings.HasPrefix(got, "Subject: a 1") {
		t.Errorf("after the move the read-only view reads %q", got)
	}
}

func TestMaildirAppendCopyMove(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	a, err := OpenMaildir(ctx, filepath.Join(root, "a"), MaildirOpenOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenMaildir(ctx, filepath.Join(root, "b"), MaildirOpenOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	date := time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)
	msg, err := a.Append(ctx, strings.NewReader("Subject: app\n\nhello\n"), FlagSeen|FlagDraft, date)
	if err != nil {
		t.Fatal(err)
	}
	if msg.UID != 1 || msg.Flags != FlagSeen|FlagDraft || !msg.InternalDate.Equal(date) || msg.Size != 20 || msg.Recent {
		t.Errorf("appended %+v", msg)
	}
	if !strings.HasSuffix(msg.Name, ":2,DS") || !postfixName.MatchString(strings.TrimSuffix(strings.TrimPrefix(msg.Name, "cur/"), ":2,DS")) {
		t.Errorf("appended name %q", msg.Name)
	}
	cp, err := a.Copy(ctx, 1, b)
	if err != nil {
		t.Fatal(err)
	}
	if cp.UID != 1 || cp.Flags != msg.Flags || !cp.InternalDate.Equal(date) || cp.Key == msg.Key {
		t.Errorf("copy %+v of %+v", cp, msg)
	}
	if readAllMsg(t, b, cp.UID) != "Subject: app\n\nhello\n" {
		t.Error("copy content differs")
	}
	// Copy within the same maildir gets a new UID.
	cp2, err := a.Copy(ctx, 1, a)
	if err != nil || cp2.UID != 2 {
		t.Fatalf("self copy %+v %v", cp2, err)
	}
	mv, err := a.Move(ctx, 2, b)
	if err != nil {
		t.Fatal(err)
	}
	if mv.UID != 2 || mv.Key != cp2.Key {
		t.Errorf("moved %+v", mv)
	}
	if fmt.Sprint(uidsOf(a.Messages())) != "[1]" || fmt.Sprint(uidsOf(b.Messages())) != "[1 2]" {
		t.Errorf("after move a=%v b=%v", uidsOf(a.Messages()), uidsOf(b.Messages()))
	}
	if _, err := a.SetFlags(ctx, 99, FlagSeen); !errors.Is(err, ErrNoMessage) {
		t.Errorf("SetFlags of a missing UID: %v", err)
	}
	if _, _, err := a.Open(ctx, 2); !errors.Is(err, ErrNoMessage) {
		t.Errorf("Open of a moved UID: %v", err)
	}
}

// Flags changed by another program (renaming the file, as mutt and Dovecot
// do) keep the UID, and keyword letters survive our flag changes.
func TestMaildirForeignRename(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "Maildir")
	deliverN(t, dir, "a", 1)
	md, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := md.Messages()[0]
	foreign := "cur/" + m.Key + ":2,Sab"
	if err := os.Rename(filepath.Join(dir, m.Name), filepath.Join(dir, foreign)); err != nil {
		t.Fatal(err)
	}
	ch, err := md.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Flags) != 1 || ch.Flags[0].UID != 1 || ch.Flags[0].Flags != FlagSeen || ch.Flags[0].Extra != "ab" {
		t.Fatalf("changes %+v", ch)
	}
	got, err := md.SetFlags(ctx, 1, FlagReplied|FlagSeen)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "cur/"+m.Key+":2,RSab" {
		t.Errorf("name %q, want keywords kept and letters in ASCII order", got.Name)
	}
}

// Many sessions and deliveries at once, in two processes: every message
// gets exactly one UID, and every session agrees on it.
func TestMaildirConcurrentUIDs(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "Maildir")
	deliverN(t, dir, "seed", 1)
	deliverer := startHelper(t, "deliver-maildir", dir, "40", "proc")
	syncer := startHelper(t, "sync-maildir", dir, "30", "x")
	if err := deliverer.Start(); err != nil {
		t.Fatal(err)
	}
	if err := syncer.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	views := map[string]uint32{} // key -> UID as seen by any session
	conflict := ""
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			md, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			for i := 0; i < 20; i++ {
				if w%2 == 0 {
					if _, err := DeliverMaildir(ctx, dir, strings.NewReader(testMessage(fmt.Sprint("g", w), i)), MaildirOptions{}); err != nil {
						t.Error(err)
						return
					}
				}
				if _, err := md.Sync(ctx); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, m := range md.Messages() {
					if u, ok := views[m.Key]; ok && u != m.UID {
						conflict = fmt.Sprintf("%s has UID %d and %d", m.Key, u, m.UID)
					}
					views[m.Key] = m.UID
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if err := deliverer.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := syncer.Wait(); err != nil {
		t.Fatal(err)
	}
	if conflict != "" {
		t.Fatal(conflict)
	}
	md, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := md.Messages()
	if len(msgs) != 1+40+40 {
		t.Fatalf("%d messages, want 81", len(msgs))
	}
	var uids []int
	for i, m := range msgs {
		uids = append(uids, int(m.UID))
		if u, ok := views[m.Key]; ok && u != m.UID {
			t.Errorf("%s: UID %d, a session saw %d", m.Key, m.UID, u)
		}
		if i > 0 && msgs[i-1].UID >= m.UID {
			t.Errorf("UIDs not ascending")
		}
	}
	if !sort.IntsAreSorted(uids) || uids[len(uids)-1] != 81 || md.UIDNext() != 82 {
		t.Errorf("UIDs %v next %d: want 1..81 with no gaps", uids, md.UIDNext())
	}
	_ = bytes.MinRead
}

func TestMaildirLockSession(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "Maildir")
	a, err := OpenMaildir(ctx, dir, MaildirOpenOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := OpenMaildir(ctx, dir, MaildirOpenOptions{})
	unlock, err := a.LockSession()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.LockSession(); !errors.Is(err, ErrLocked) {
		t.Fatalf("second session: %v, want ErrLocked", err)
	}
	// Deliveries and other operations go on.
	deliverN(t, dir, "x", 1)
	if _, err := b.Sync(ctx); err != nil || len(b.Messages()) != 1 {
		t.Fatalf("sync during a session: %v", err)
	}
	unlock()
	unlock2, err := b.LockSession()
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	unlock2()
}

// Keywords keep their names, not their letters, when copied or moved to a
// folder whose dovecot-keywords numbers them differently.
func TestMaildirKeywordsAcrossFolders(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	a, _ := OpenMaildir(ctx, filepath.Join(root, "a"), MaildirOpenOptions{Create: true})
	b, _ := OpenMaildir(ctx, filepath.Join(root, "b"), MaildirOpenOptions{Create: true})
	os.WriteFile(filepath.Join(root, "b", KeywordsName), []byte("0 Other\n"), 0o600)
	m, err := a.Append(ctx, strings.NewReader("x\n"), FlagSeen, testTime)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetKeywords(ctx, m.UID, []string{"Junk", "Work"}); err != nil {
		t.Fatal(err)
	}
	cp, err := a.Copy(ctx, m.UID, b)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cp.Keywords) != "[Junk Work]" || !strings.HasSuffix(cp.Name, ":2,Sbc") {
		t.Errorf("copy: %+v", cp)
	}
	mv, err := a.Move(ctx, m.UID, b)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(mv.Keywords) != "[Junk Work]" || !strings.HasSuffix(mv.Name, ":2,Sbc") {
		t.Errorf("move: %+v", mv)
	}
	if _, err := a.SetKeywords(ctx, 99, []string{"bad keyword"}); err == nil {
		t.Error("keyword with a space accepted")
	}
}

// Keywords added at the same time by several sessions all survive.
func TestMaildirKeywordsConcurrent(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "Maildir")
	deliverN(t, dir, "k", 8)
	var wg sync.WaitGroup
	for w := 1; w <= 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			md, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := md.SetKeywords(ctx, uint32(w), []string{fmt.Sprint("kw", w), "Shared"}); err != nil {
				t.Error(err)
			}
		}(w)
	}
	wg.Wait()
	md, err := OpenMaildir(ctx, dir, MaildirOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := md.Keywords()
	if len(all) != 9 {
		t.Errorf("keywords %v, want 9", all)
	}
	for _, m := range md.Messages() {
		got := fmt.Sprint(m.Keywords)
		if got != fmt.Sprintf("[kw%d Shared]", m.UID) && got != fmt.Sprintf("[Shared kw%d]", m.UID) {
			t.Errorf("UID %d keywords %s", m.UID, got)
		}
	}
}
