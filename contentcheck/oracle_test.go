package contentcheck

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/postkit-mail/postkit/internal/corpus"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/maps"
)

// recorder is a table that notes every key it matches, as postmap -q
// prints it ("key<TAB>value"), and then answers "not found" so that no
// action changes what the walk looks at next.
type recorder struct {
	m   maps.Map
	buf *bytes.Buffer
	err *error
}

func (r recorder) Lookup(ctx context.Context, key string) (string, bool, error) {
	v, ok, err := r.m.Lookup(ctx, key)
	if ok {
		fmt.Fprintf(r.buf, "%s\t%s\n", key, v)
	}
	if err != nil && *r.err == nil {
		*r.err = err
	}
	return "", false, err
}

// corpusMessages returns the messages of the differential tests: the
// broken-MIME and CPython corpora whole, and the SpamAssassin corpus
// whole with CONTENTCHECK_FULL=1, else every step-th message.
func corpusMessages(t *testing.T, step int) []string {
	var paths []string
	paths = append(paths, corpus.BrokenMIME(t)...)
	paths = append(paths, corpus.CPythonEmail(t)...)
	sa := corpus.SpamAssassin(t)
	if os.Getenv("CONTENTCHECK_FULL") == "1" {
		step = 1
	}
	for i := 0; i < len(sa); i += step {
		paths = append(paths, sa[i])
	}
	return paths
}

func sampleStep() int {
	if testing.Short() || raceEnabled {
		return 100
	}
	return 40
}

func openTable(t testing.TB, spec string) maps.Map {
	t.Helper()
	m, err := maps.Default().Open(context.Background(), spec, maps.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open %s: %v", spec, err)
	}
	return m
}

// walkKeys runs a message through a Walker whose tables record their
// matches, in one of postmap's modes: header (-h) or body (-b), with MIME
// processing (-m) or without.
func walkKeys(msg []byte, table maps.Map, header, mime bool) (string, error) {
	var buf bytes.Buffer
	var lookupErr error
	rec := recorder{table, &buf, &lookupErr}
	c := &Config{DisableMIMEInputProcessing: !mime, BodyChecksSizeLimit: -1, LineLengthLimit: 1 << 30}
	if header {
		c.HeaderChecks, c.MIMEHeaderChecks, c.NestedHeaderChecks = rec, rec, rec
	} else {
		c.BodyChecks = rec
	}
	w := c.NewWalker(context.Background(), io.Discard, Hooks{}, LogInfo{})
	if _, err := w.Write(msg); err != nil {
		return "", err
	}
	if _, err := w.Close(); err != nil {
		return "", err
	}
	if lookupErr != nil {
		return "", fmt.Errorf("table lookup: %w", lookupErr)
	}
	return buf.String(), nil
}

// postmapInput is the message as postmap reads it: LF lines, with the
// stray CRs that cleanup masks already spaces.
func postmapInput(msg []byte) []byte {
	lf := bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(lf, []byte("\r"), []byte(" "))
}

// TestPostmapDifferential compares the keys the Walker looks up, and the
// values they find, with Postfix's postmap -hq, -hmq, -bq and -bmq over
// the message corpora, for regexp and pcre header and body tables of about
// a hundred rules each.
func TestPostmapDifferential(t *testing.T) {
	t.Parallel()
	postmap := oracle.Require(t, "postmap")
	dir := oracle.ConfigDir(t, "")
	paths := corpusMessages(t, sampleStep())
	type table struct {
		spec   string
		header bool
		m      maps.Map
	}
	var tables []table
	for _, f := range []string{"header.regexp", "header.pcre", "body.regexp", "body.pcre"} {
		abs, err := filepath.Abs(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		spec := strings.TrimPrefix(filepath.Ext(f), ".") + ":" + abs
		tables = append(tables, table{spec, strings.HasPrefix(f, "header"), openTable(t, spec)})
	}
	type job struct {
		path string
		msg  []byte
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var fails []string
	compared, matches, skipped := 0, 0, 0
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				in := postmapInput(j.msg)
				for _, tb := range tables {
					for _, mime := range []bool{true, false} {
						flag := "-b"
						if tb.header {
							flag = "-h"
						}
						if mime {
							flag += "m"
						}
						res, err := oracle.Exec(postmap, in, "-c", dir, flag+"q", "-", tb.spec)
						var f string
						// Exit status 1 only means that nothing matched.
						if err != nil || res.Code > 1 || len(res.Stderr) > 0 {
							f = fmt.Sprintf("%s: postmap %s: %v %s", j.path, flag, err, res.Stderr)
						}
						want := string(res.Stdout)
						if !tb.header {
							// postmap looks empty lines up; cleanup never does.
							var keep []string
							for _, l := range strings.SplitAfter(want, "\n") {
								if !strings.HasPrefix(l, "\t") || strings.Count(l, "\t") > 1 {
									keep = append(keep, l)
								}
							}
							want = strings.Join(keep, "")
						}
						got, gerr := walkKeys(j.msg, tb.m, tb.header, mime)
						if gerr != nil {
							// maps gives a pcre rule that runs on a regexp2
							// engine 250 ms per match; a loaded machine can
							// hit that. Once more before it counts.
							got, gerr = walkKeys(j.msg, tb.m, tb.header, mime)
						}
						if f == "" && gerr != nil {
							f = fmt.Sprintf("%s: walker: %v", j.path, gerr)
						}
						if f == "" && got != want {
							f = fmt.Sprintf("%s %s %s:\n%s", j.path, flag, tb.spec, oracle.Diff(want, got))
						}
						mu.Lock()
						compared++
						matches += strings.Count(want, "\t")
						if f != "" {
							fails = append(fails, f)
						}
						mu.Unlock()
					}
				}
			}
		}()
	}
	for _, p := range paths {
		msg := corpus.Message(t, p)
		if bytes.IndexByte(msg, 0) >= 0 {
			// postmap's keys are C strings: a NUL ends them.
			skipped++
			continue
		}
		jobs <- job{p, msg}
	}
	close(jobs)
	wg.Wait()
	t.Logf("%d messages (%d with NUL skipped), %d postmap runs compared, %d matching lines", len(paths)-skipped, skipped, compared, matches)
	if len(fails) > 0 {
		for i, f := range fails {
			if i == 15 {
				break
			}
			t.Error(f)
		}
		t.Errorf("%d of %d comparisons differ", len(fails), compared)
	}
}
