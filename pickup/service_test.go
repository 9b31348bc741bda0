package pickup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
)

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// flakyStore fails the first n Creates, as a queue on a full disk would.
type flakyStore struct {
	cleanup.Store
	fail atomic.Int32
}

func (f *flakyStore) Create(ctx context.Context, t time.Time) (cleanup.File, error) {
	if f.fail.Add(-1) >= 0 {
		return nil, errors.New("no space left on device")
	}
	return f.Store.Create(ctx, t)
}

type rig struct {
	dir   string
	store *cleanup.DirStore
	flaky *flakyStore
	svc   *Service
	log   *logBuffer
}

func newRig(t *testing.T, poll time.Duration) *rig {
	t.Helper()
	base := t.TempDir()
	r := &rig{dir: filepath.Join(base, "maildrop"), log: &logBuffer{}}
	if err := Create(r.dir, 0); err != nil {
		t.Fatal(err)
	}
	var err error
	r.store, err = cleanup.OpenDirStore(filepath.Join(base, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	r.flaky = &flakyStore{Store: r.store}
	cfg, err := config.Parse("main.cf", strings.NewReader("myhostname = mx.example.test\nmyorigin = example.test\nmydomain = example.test\ncompatibility_level = 3.6\n"))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(r.log, nil))
	cc, err := cleanup.ConfigFromMain(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cc.Logger = logger
	c, err := cleanup.New(cc, r.flaky)
	if err != nil {
		t.Fatal(err)
	}
	r.svc, err = New(Config{Dir: r.dir, PollInterval: poll, RetryDelay: 50 * time.Millisecond,
		Hostname: "mx.example.test", Location: time.UTC, Logger: logger}, c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run starts the service and stops it when the test ends.
func (r *rig) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	// Wait for the wake-up socket.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(r.dir, WakeupSocket)); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("service did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rig) waitQueued(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ids, err := r.store.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) >= n {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages queued, want %d; log:\n%s", len(ids), n, r.log)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rig) maildropFiles(t *testing.T, sub string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(r.dir, sub))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if validName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// A submission is picked up at once on the wake-up datagram (the poll
// interval is an hour), queued with its envelope and Postfix's Received:
// header, and its maildrop file is gone.
func TestServiceWakeupAndQueue(t *testing.T) {
	r := newRig(t, time.Hour)
	r.run(t)
	arrival := time.Date(2026, 11, 3, 9, 5, 7, 0, time.UTC)
	env := &Envelope{Arrival: arrival, UID: os.Getuid(), User: "alice", Sender: "alice",
		FullName: "Alice Example", Local: true, Proto: "local",
		Recipients: []Recipient{{Addr: "bob@example.net"}, {Addr: "carol"}}}
	if _, err := Submit(context.Background(), r.dir, env, strings.NewReader("Subject: hi\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	Wake(r.dir)
	ids := r.waitQueued(t, 1)
	qenv, content, err := r.store.Read(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if qenv.Sender != "alice@example.test" {
		t.Errorf("sender %q, want alice@example.test", qenv.Sender)
	}
	var rcpts []string
	for _, rc := range qenv.Recipients {
		rcpts = append(rcpts, rc.Addr)
	}
	if got, want := strings.Join(rcpts, " "), "bob@example.net carol@example.test"; got != want {
		t.Errorf("recipients %q, want %q", got, want)
	}
	wantRcvd := fmt.Sprintf("Received: by mx.example.test (Postfix, from userid %d)\r\n\tid %s; Tue,  3 Nov 2026 09:05:07 +0000 (UTC)\r\n", os.Getuid(), ids[0])
	if !strings.HasPrefix(string(content), wantRcvd) {
		t.Errorf("content starts %q, want %q", truncate(string(content)), wantRcvd)
	}
	if !strings.Contains(string(content), "From: Alice Example <alice@example.test>\r\n") || !strings.HasSuffix(string(content), "\r\n\r\nbody\r\n") {
		t.Errorf("content:\n%s", content)
	}
	// The file goes right after cleanup's Commit, which the store saw.
	for deadline := time.Now().Add(5 * time.Second); ; {
		left := r.maildropFiles(t, ".")
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("maildrop still holds %q", left)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if want := fmt.Sprintf("%s: uid=%d from=<alice>", ids[0], os.Getuid()); !strings.Contains(r.log.String(), want) {
		t.Errorf("log has no %q:\n%s", want, r.log)
	}
}

// Without a wake-up, the poll finds the file.
func TestServicePoll(t *testing.T) {
	r := newRig(t, 30*time.Millisecond)
	r.run(t)
	env := &Envelope{Arrival: time.Now(), Sender: "", Local: true, Proto: "local", Recipients: []Recipient{{Addr: "x@example.net"}}}
	if _, err := Submit(context.Background(), r.dir, env, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	ids := r.waitQueued(t, 1)
	qenv, _, err := r.store.Read(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if qenv.Sender != "" {
		t.Errorf("null sender became %q", qenv.Sender)
	}
}

// Damaged and foreign files are moved to corrupt/ and logged; good files
// next to them are still queued.
func TestServiceCorrupt(t *testing.T) {
	r := newRig(t, time.Hour)
	good := encode(t, &Envelope{Arrival: time.Now(), Local: true, Proto: "local", Recipients: []Recipient{{Addr: "x@example.net"}}}, "Subject: x\r\n\r\n")
	files := map[string][]byte{
		"a-torn":    good[:len(good)-10],
		"b-garbage": []byte("hello\n"),
		"c-empty":   nil,
		"d-good":    good,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(r.dir, "e-link")); err != nil {
		t.Fatal(err)
	}
	// Unfinished submissions: one a dead sendmail left two days ago,
	// one being written now.
	for _, n := range []string{".tmp-old", ".tmp-new"} {
		if err := os.WriteFile(filepath.Join(r.dir, n), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(filepath.Join(r.dir, ".tmp-old"), old, old)
	n, err := r.svc.Scan(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Scan: %d queued, %v; want 1", n, err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, ".tmp-old")); err == nil {
		t.Errorf("stale .tmp-old not removed")
	}
	if _, err := os.Stat(filepath.Join(r.dir, ".tmp-new")); err != nil {
		t.Errorf("fresh .tmp-new removed: %v", err)
	}
	got := strings.Join(r.maildropFiles(t, CorruptDir), " ")
	if got != "a-torn b-garbage c-empty e-link" {
		t.Errorf("corrupt/ holds %q", got)
	}
	if left := r.maildropFiles(t, "."); len(left) != 0 {
		t.Errorf("maildrop still holds %q", left)
	}
	for _, want := range []string{"maildrop file a-torn: corrupt maildrop file: ", "moved to corrupt/b-garbage", "e-link: a symbolic link"} {
		if !strings.Contains(r.log.String(), want) {
			t.Errorf("log has no %q:\n%s", want, r.log)
		}
	}
}

// A message cleanup rejects (too many hops) goes to rejected/; one that
// fails temporarily (the store is full) stays and is queued on a later
// scan.
func TestServiceRejectAndRetry(t *testing.T) {
	r := newRig(t, time.Hour)
	env := &Envelope{Arrival: time.Now(), Sender: "a", Local: true, Proto: "local", Recipients: []Recipient{{Addr: "x@example.net"}}}
	loop := strings.Repeat("Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n", 60) + "\r\nloop\r\n"
	rejected, err := Submit(context.Background(), r.dir, env, strings.NewReader(loop))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.maildropFiles(t, RejectedDir); len(got) != 1 || got[0] != rejected {
		t.Errorf("rejected/ holds %q, want %q; log:\n%s", got, rejected, r.log)
	}
	if !strings.Contains(r.log.String(), "rejected: 5") {
		t.Errorf("log does not say why:\n%s", r.log)
	}

	r.flaky.fail.Store(2)
	name, err := Submit(context.Background(), r.dir, env, strings.NewReader("Subject: retry\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := r.svc.Scan(context.Background()); n != 0 {
		t.Fatalf("queued %d with a failing store", n)
	}
	if got := r.maildropFiles(t, "."); len(got) != 1 || got[0] != name {
		t.Fatalf("after a temporary failure the maildrop holds %q, want %q", got, name)
	}
	// Within RetryDelay the file is left alone.
	if n, _ := r.svc.Scan(context.Background()); n != 0 {
		t.Fatalf("retried before RetryDelay")
	}
	time.Sleep(60 * time.Millisecond)
	if n, _ := r.svc.Scan(context.Background()); n != 0 {
		t.Fatalf("queued with the store still failing")
	}
	time.Sleep(60 * time.Millisecond)
	if n, err := r.svc.Scan(context.Background()); n != 1 || err != nil {
		t.Fatalf("after the store recovered: %d queued, %v; log:\n%s", n, err, r.log)
	}
	if got := r.maildropFiles(t, "."); len(got) != 0 {
		t.Errorf("maildrop still holds %q", got)
	}
	if !strings.Contains(r.log.String(), "no space left on device") {
		t.Errorf("temporary failure not logged:\n%s", r.log)
	}
}

// A second service on the same directory is refused; a stale socket of a
// dead one is taken over.
func TestServiceSocket(t *testing.T) {
	r := newRig(t, time.Hour)
	r.run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.svc.Run(ctx); err == nil || !strings.Contains(err.Error(), "another service") {
		t.Fatalf("second Run: %v", err)
	}

	r2 := newRig(t, time.Hour)
	if err := os.WriteFile(filepath.Join(r2.dir, WakeupSocket), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A plain file is not a socket; Listen fails with "address in use"
	// and a dial is refused, so it is removed as stale.
	r2.run(t)
}

// A directory that Create did not make (Postfix's maildrop, say) is
// neither scanned nor watched.
func TestServiceRefusesForeignDir(t *testing.T) {
	r := newRig(t, time.Hour)
	if err := os.Remove(filepath.Join(r.dir, MarkerFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Submit(context.Background(), r.dir, &Envelope{Arrival: time.Now(), Proto: "local"}, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Scan(context.Background()); err == nil || !strings.Contains(err.Error(), "not a postkit maildrop") {
		t.Errorf("Scan: %v", err)
	}
	if err := r.svc.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "not a postkit maildrop") {
		t.Errorf("Run: %v", err)
	}
	if got := r.maildropFiles(t, "."); len(got) != 1 {
		t.Errorf("maildrop holds %q, want the file untouched", got)
	}
}
