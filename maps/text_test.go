package maps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

func TestTxtMissingSourceNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "virtual")
	_, err := Default().Open(context.Background(), "hash:"+path, Options{})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "source file") {
		t.Fatalf("error = %v, want one naming %s and the source file", err, path)
	}
}

// TestTxtReload edits the source file and waits for the table to see it;
// texthash must keep what it read at open.
func TestTxtReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t")
	if err := os.WriteFile(path, []byte("a 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var warns []string
	h, err := Default().Open(ctx, "hash:"+path, Options{Warn: func(w Warning) { warns = append(warns, w.Msg) }})
	if err != nil {
		t.Fatal(err)
	}
	th, err := Default().Open(ctx, "texthash:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("a 2\nb 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, _, _ := h.Lookup(ctx, "A")
		if v == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hash table not reloaded, a = %q", v)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v, ok, _ := h.Lookup(ctx, "b"); !ok || v != "3" {
		t.Errorf("b = %q %v", v, ok)
	}
	if v, _, _ := th.Lookup(ctx, "a"); v != "1" {
		t.Errorf("texthash reloaded: a = %q", v)
	}
	// A file that disappears keeps the old contents.
	os.Remove(path)
	time.Sleep(1100 * time.Millisecond)
	h.Lookup(ctx, "a")
	time.Sleep(100 * time.Millisecond)
	if v, ok, _ := h.Lookup(ctx, "a"); !ok || v != "2" {
		t.Errorf("after removal a = %q %v, want the old value", v, ok)
	}
	if n, ok := h.(Named); !ok || n.Name() != "hash:"+path {
		t.Errorf("Name() wrong")
	}
	if KindOf(h) != Fixed {
		t.Errorf("kind not Fixed")
	}
}

// TestTxtFoldKeyVsPostmap checks FoldKey against postmap's case folding of
// non-ASCII keys (smtputf8_enable = yes: full Unicode case folding).
func TestTxtFoldKeyVsPostmap(t *testing.T) {
	oracle.Require(t, "postmap")
	cfg := oracle.ConfigDir(t, "")
	keys := []string{"ÄBC", "École", "ДОМ", "STRAßE", "ΣΑΣ", "ς", "İ", "ǅ", "\u212a", "ﬃ"}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "fold")
	var src strings.Builder
	for i, k := range keys {
		fmt.Fprintf(&src, "%s v%d\n", k, i)
	}
	os.WriteFile(path, []byte(src.String()), 0o644)
	oracle.Run(t, nil, "postmap", "-c", cfg, "hash:"+path)
	dump := oracle.Run(t, nil, "postmap", "-c", cfg, "-s", "hash:"+path)
	want := map[string]string{}
	for _, l := range srcSortedLines(dump.Stdout) {
		k, v, _ := strings.Cut(l, "\t")
		want[v] = k
	}
	for i, k := range keys {
		if got, w := FoldKey(k), want[fmt.Sprintf("v%d", i)]; got != w {
			t.Errorf("FoldKey(%q) = %q, postmap stores %q", k, got, w)
		}
	}
}

// TestTxtDuplicatesVsPostmap: a table opened with DuplicatesReplace answers
// as Postfix's table built with postmap -r, and DuplicatesIgnore as one
// built with -w; no duplicate warnings either way.
func TestTxtDuplicatesVsPostmap(t *testing.T) {
	oracle.Require(t, "postmap")
	cfg := oracle.ConfigDir(t, "")
	src := "a 1\nB 2\nA 3\nb 4\nc 5\n"
	keys := "a\nb\nc\nd\n"
	for _, c := range []struct {
		flag string
		dups Duplicates
	}{{"-r", DuplicatesReplace}, {"-w", DuplicatesIgnore}} {
		dir := t.TempDir()
		os.Chmod(dir, 0o755)
		path := filepath.Join(dir, "t")
		os.WriteFile(path, []byte(src), 0o644)
		build := oracle.Run(t, nil, "postmap", c.flag, "-c", cfg, "hash:"+path)
		want := oracle.Run(t, []byte(keys), "postmap", "-c", cfg, "-q", "-", "hash:"+path)
		var warns []Warning
		m, err := txtOpen("hash", path, Options{Warn: func(w Warning) { warns = append(warns, w) }, Duplicates: c.dups}, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := srcOurQuery(t, m, strings.Fields(keys)); string(got) != string(want.Stdout) {
			t.Errorf("%s: got %q, postmap gives %q", c.flag, got, want.Stdout)
		}
		if len(warns) != 0 || len(build.Stderr) != 0 {
			t.Errorf("%s: warnings %v, postmap: %s", c.flag, warns, build.Stderr)
		}
	}
}

func txtBigFile(b *testing.B, n int) string {
	path := filepath.Join(b.TempDir(), "big")
	var sb strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "user%d@Example%d.com\tsmtp:[relay%d.example.net]:25\n", i, i%1000, i%7)
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

func BenchmarkTextHashLookup(b *testing.B) {
	path := txtBigFile(b, 100_000)
	m, err := Default().Open(context.Background(), "hash:"+path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	keys := []string{"user77@example77.com", "USER99999@EXAMPLE999.COM", "nobody@example.org"}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Lookup(ctx, keys[i%3])
	}
}

// BenchmarkTextHashLoad loads a 1M-line file and, once, times the real
// postmap building hash: from the same file, reporting both per line.
func BenchmarkTextHashLoad(b *testing.B) {
	const lines = 1_000_000
	path := txtBigFile(b, lines)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := openHash(context.Background(), path, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/lines, "ns/line")
	b.StopTimer()
	if _, err := os.Stat("/usr/sbin/postmap"); err == nil {
		cfg := oracle.ConfigDir(b, "")
		start := time.Now()
		oracle.Run(b, nil, "postmap", "-c", cfg, "hash:"+path)
		pm := time.Since(start)
		b.ReportMetric(float64(pm.Nanoseconds())/lines, "postmap-ns/line")
	}
}

// BenchmarkTextHashLookupParallel is BenchmarkTextHashLookup from every
// core at once: the reload check must not make the cores fight over a
// cache line.
func BenchmarkTextHashLookupParallel(b *testing.B) {
	path := txtBigFile(b, 100_000)
	m, err := Default().Open(context.Background(), "hash:"+path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	keys := []string{"user77@example77.com", "USER99999@EXAMPLE999.COM", "nobody@example.org"}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Lookup(ctx, keys[i%3])
			i++
		}
	})
}

// BenchmarkTxtReloadCheck isolates the per-lookup cost of the reload
// check: the old way (read the monotonic clock) against coarseNow, serial
// and from every core.
func BenchmarkTxtReloadCheck(b *testing.B) {
	base := time.Now()
	var sink atomic.Int64
	b.Run("system-clock", func(b *testing.B) {
		for b.Loop() {
			sink.Store(int64(time.Since(base)))
		}
	})
	b.Run("coarseNow", func(b *testing.B) {
		for b.Loop() {
			sink.Store(coarseNow())
		}
	})
	b.Run("system-clock-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var n int64
			for pb.Next() {
				n += int64(time.Since(base))
			}
			sink.Add(n)
		})
	})
	b.Run("coarseNow-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var n int64
			for pb.Next() {
				n += coarseNow()
			}
			sink.Add(n)
		})
	})
}

// TestTxtClock: the coarse clock (coarseNow) is never more than about a tick behind.
func TestTxtClock(t *testing.T) {
	// The coarse clock never runs ahead of the real one, never goes back,
	// and keeps advancing while it is used. (How far it may lag depends on
	// the scheduler, so that is not asserted.)
	start := coarseNow()
	prev := start
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := coarseNow()
		if real := int64(time.Since(coarseBase)); got > real {
			t.Fatalf("coarseNow %v is ahead of the real clock %v", time.Duration(got), time.Duration(real))
		}
		if got < prev {
			t.Fatalf("coarseNow went back from %v to %v", time.Duration(prev), time.Duration(got))
		}
		prev = got
		if got-start >= int64(2*coarseTick) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("coarseNow advanced only %v in 10s", time.Duration(got-start))
		}
		time.Sleep(coarseTick / 4)
	}
}
