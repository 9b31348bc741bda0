package cleanup

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// logRecorder keeps the log lines.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.lines = append(l.lines, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// has reports whether a line equal to want was logged.
func (l *logRecorder) has(want string) bool {
	for _, x := range l.all() {
		if x == want {
			return true
		}
	}
	return false
}

var fixedTime = time.Date(2026, 11, 28, 4, 8, 12, 0, time.UTC)

// newTest returns a Cleanup over a DirStore in a temp dir, with a fixed
// clock and a log recorder.
func newTest(t testing.TB, cfg Config) (*Cleanup, *DirStore, *logRecorder) {
	t.Helper()
	st, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec := &logRecorder{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(rec)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.example.com"
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return fixedTime }
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	c, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	return c, st, rec
}

// submit sends one message through c and returns what was stored.
func submit(t testing.TB, c *Cleanup, st *DirStore, in Input, msg string) (*Envelope, string, string, error) {
	t.Helper()
	ctx := context.Background()
	m, err := c.Open(ctx, &in)
	if err != nil {
		t.Fatal(err)
	}
	id := m.ID()
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	// Odd chunk sizes: the pipeline must not care.
	for len(msg) > 0 {
		n := min(len(msg), 7)
		if _, err := m.Write([]byte(msg[:n])); err != nil {
			t.Fatal(err)
		}
		msg = msg[n:]
	}
	if err := m.Commit(ctx); err != nil {
		return nil, "", id, err
	}
	if ids, _ := st.List(); !slices.Contains(ids, id) {
		return nil, "", id, nil // discarded
	}
	env, data, err := st.Read(id)
	if err != nil {
		return nil, "", id, err
	}
	return env, string(data), id, nil
}

func addrs(rs []Recipient) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Addr)
	}
	return strings.Join(out, ",")
}
