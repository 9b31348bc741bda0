package cleanup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/contentcheck"
	"github.com/postkit-mail/postkit/internal/corpus"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/rewrite"
)

// memStore keeps messages in memory, for fuzzing and benchmarks where
// disk writes would measure the disk.
type memStore struct {
	mu   sync.Mutex
	n    int
	msgs map[string]*memFile
}

type memFile struct {
	s   *memStore
	id  string
	buf bytes.Buffer
	env *Envelope
}

func (s *memStore) Create(ctx context.Context, arrival time.Time) (File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return &memFile{s: s, id: "M" + string(rune('A'+s.n%26))}, nil
}

func (f *memFile) ID() string                  { return f.id }
func (f *memFile) Write(p []byte) (int, error) { return f.buf.Write(p) }
func (f *memFile) Abort() error                { return nil }
func (f *memFile) Commit(ctx context.Context, env *Envelope) error {
	f.env = env
	f.s.mu.Lock()
	if f.s.msgs == nil {
		f.s.msgs = map[string]*memFile{}
	}
	f.s.msgs[f.id] = f
	f.s.mu.Unlock()
	return nil
}

func fuzzCleanup(t testing.TB) *Cleanup {
	rc := rewrite.Defaults("example.com", "example.com")
	rc.CanonicalMaps = maps.List{maps.StaticMap{"joe@example.com": "joe.public@example.com"}}
	rc.VirtualAliasMaps = maps.List{maps.StaticMap{"ann@example.com": "ann@a.example, b@b.example"}}
	rw, err := rewrite.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := maps.Open(context.Background(), "regexp:{{/^Subject: .*reject/ REJECT}, {/^X-Bcc:/ BCC watch@example.com}, {/^X-Repl:/ REPLACE X-Replaced: 1}}")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Rewriter: rw, Checks: &contentcheck.Config{HeaderChecks: hc},
		UndisclosedRecipientsHeader: "To: undisclosed-recipients:;",
		Logger:                      slog.New(slog.DiscardHandler)}, &memStore{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzPipeline runs arbitrary content through the whole pipeline (header
// hooks, header rewriting, recipient extraction, missing headers): no
// panic, and either a committed message or a *RejectError.
func FuzzPipeline(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/seeds/*.eml")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true, true)
	}
	if os.Getenv("CI") == "true" || corpusPresent() {
		for _, list := range [][]string{corpus.BrokenMIME(f), corpus.CPythonEmail(f)} {
			for i, p := range list {
				if i%4 == 0 {
					f.Add(corpus.Message(f, p), i%8 == 0, i%3 == 0)
				}
			}
		}
	}
	c := fuzzCleanup(f)
	f.Fuzz(func(t *testing.T, data []byte, local, extract bool) {
		ctx := context.Background()
		m, err := c.Open(ctx, &Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "ann@example.com"}},
			Local: local, ExtractRecipients: extract, FullName: "Joe (\"Q\") Public"})
		if err != nil {
			t.Fatal(err)
		}
		for len(data) > 0 {
			n := min(len(data), 13)
			if _, err := m.Write(data[:n]); err != nil {
				t.Fatal(err)
			}
			data = data[n:]
		}
		err = m.Commit(ctx)
		var re *RejectError
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("commit: %v", err)
		}
	})
}

func corpusPresent() bool {
	_, err := os.Stat(filepath.Join(corpus.Dir(), "enmime"))
	return err == nil
}

var _ io.Writer = (*memFile)(nil)
