package mailbox

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// When inotify refuses a watch (max_user_watches reached: ENOSPC), the
// path is polled instead and other processes' deliveries still show.
func TestHubInotifyLimitFallsBackToPolling(t *testing.T) {
	saved := inotifyAddWatch
	inotifyAddWatch = func(fd int, name string, mask uint32) (int, error) { return -1, syscall.ENOSPC }
	defer func() { inotifyAddWatch = saved }()
	hub := NewHub(HubOptions{Watch: WatchInotify, PollInterval: 50 * time.Millisecond})
	defer hub.Close()
	dir := filepath.Join(t.TempDir(), "Maildir")
	if err := makeMaildir(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	sub := hub.Subscribe(dir)
	defer sub.Close()
	if hub.WatchMethod() != "inotify" || hub.fallback == nil {
		t.Fatalf("method %q, fallback %v", hub.WatchMethod(), hub.fallback)
	}
	if err := startHelper(t, "deliver-maildir", dir, "1", "proc").Run(); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, sub, EventNew, true)
}
