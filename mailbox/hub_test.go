package mailbox

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2024, 11, 26, 17, 1, 1, 0, time.UTC)

// waitEvent returns the first event of kind, failing after a generous
// deadline (a liveness bound, not a timing assertion).
func waitEvent(t *testing.T, s *Subscription, kind EventKind, external bool) Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-s.C:
			if !ok {
				t.Fatal("subscription closed")
			}
			if ev.Kind == kind && ev.External == external {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %v event (external=%v)", kind, external)
		}
	}
}

func TestHubInProcess(t *testing.T) {
	ctx := context.Background()
	hub := NewHub(HubOptions{Watch: WatchNone})
	defer hub.Close()
	dir := filepath.Join(t.TempDir(), "Maildir")
	md, err := OpenMaildir(ctx, dir, MaildirOpenOptions{Create: true, Hub: hub})
	if err != nil {
		t.Fatal(err)
	}
	sub := hub.Subscribe(dir + "/") // normalised
	defer sub.Close()
	if _, err := DeliverMaildir(ctx, dir, strings.NewReader("x\n"), MaildirOptions{Hub: hub}); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, sub, EventNew, false)
	if ev.Mailbox != md.Path() || ev.UIDs != nil {
		t.Errorf("delivery event %+v", ev)
	}
	ch, _ := md.Sync(ctx)
	if len(ch.New) != 1 {
		t.Fatalf("sync after event: %+v", ch)
	}
	if _, err := md.SetFlags(ctx, 1, FlagSeen); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, sub, EventFlags, false); len(ev.UIDs) != 1 || ev.UIDs[0] != 1 {
		t.Errorf("flags event %+v", ev)
	}
	if err := md.Expunge(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, sub, EventExpunge, false); len(ev.UIDs) != 1 || ev.UIDs[0] != 1 {
		t.Errorf("expunge event %+v", ev)
	}
	mbox := filepath.Join(t.TempDir(), "mbox")
	msub := hub.Subscribe(mbox)
	if err := DeliverMbox(ctx, mbox, "a@b", strings.NewReader("x\n"), MboxOptions{Create: true, Hub: hub}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, msub, EventNew, false)
	msub.Close()
	if _, ok := <-msub.C; ok {
		t.Error("channel open after Close")
	}
	if hub.WatchMethod() != "none" {
		t.Errorf("WatchMethod %q", hub.WatchMethod())
	}
}

// A delivery by another process is seen through the watcher.
func TestHubCrossProcess(t *testing.T) {
	for _, mode := range []WatchMode{WatchAuto, WatchPoll} {
		hub := NewHub(HubOptions{Watch: mode, PollInterval: 50 * time.Millisecond})
		dir := filepath.Join(t.TempDir(), "Maildir")
		if err := makeMaildir(dir, 0, 0); err != nil {
			t.Fatal(err)
		}
		sub := hub.Subscribe(dir)
		want := map[WatchMode]string{WatchAuto: "inotify", WatchPoll: "poll"}[mode]
		if got := hub.WatchMethod(); got != want {
			t.Errorf("WatchMethod %q, want %q", got, want)
		}
		cmd := startHelper(t, "deliver-maildir", dir, "1", "proc")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, sub, EventNew, true)
		// Our own expunge through another process's view shows as expunge/flags.
		md, err := OpenMaildir(context.Background(), dir, MaildirOpenOptions{Hub: NewHub(HubOptions{Watch: WatchNone})})
		if err != nil {
			t.Fatal(err)
		}
		md.Expunge(context.Background(), 1)
		if mode == WatchAuto {
			waitEvent(t, sub, EventExpunge, true)
		} else {
			waitEvent(t, sub, EventFlags, true)
		}
		mbox := filepath.Join(t.TempDir(), "mbox")
		if err := DeliverMbox(context.Background(), mbox, "a@b", strings.NewReader("x\n"), MboxOptions{Create: true, Hub: NewHub(HubOptions{Watch: WatchNone})}); err != nil {
			t.Fatal(err)
		}
		msub := hub.Subscribe(mbox)
		cmd = startHelper(t, "deliver-mbox", mbox, "1", "proc")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, msub, EventNew, true)
		sub.Close()
		msub.Close()
		hub.Close()
	}
}
