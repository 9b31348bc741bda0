package contentcheck

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/postkit-mail/postkit/internal/corpus"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/maps"
)

// lookupOnly asks a table and then answers "not found", so that the
// Walker looks up every header and body line as postmap -hmq/-bmq does,
// and no action cuts the work short.
type lookupOnly struct{ m maps.Map }

func (l lookupOnly) Lookup(ctx context.Context, key string) (string, bool, error) {
	_, _, err := l.m.Lookup(ctx, key)
	return "", false, err
}

// benchMessages is the SpamAssassin corpus, every 10th message (the whole
// corpus with CONTENTCHECK_FULL=1), as CRLF messages.
func benchMessages(b *testing.B) ([][]byte, int64) {
	step := 10
	if os.Getenv("CONTENTCHECK_FULL") == "1" {
		step = 1
	}
	var msgs [][]byte
	var total int64
	sa := corpus.SpamAssassin(b)
	for i := 0; i < len(sa); i += step {
		m := corpus.Message(b, sa[i])
		msgs = append(msgs, m)
		total += int64(len(m))
	}
	return msgs, total
}

func benchTables(b *testing.B, typ string) (hdr, body string) {
	h, err := filepath.Abs("testdata/header." + typ)
	if err != nil {
		b.Fatal(err)
	}
	bd, err := filepath.Abs("testdata/body." + typ)
	if err != nil {
		b.Fatal(err)
	}
	return typ + ":" + h, typ + ":" + bd
}

// BenchmarkWalker runs the Walker over the SpamAssassin corpus with about
// 100 header_checks rules (header, MIME and nested headers) and 100
// body_checks rules, every line looked up. Compare with BenchmarkPostmap.
func BenchmarkWalker(b *testing.B) {
	msgs, total := benchMessages(b)
	for _, typ := range []string{"regexp", "pcre"} {
		b.Run(typ, func(b *testing.B) {
			hs, bs := benchTables(b, typ)
			h, bd := lookupOnly{openTable(b, hs)}, lookupOnly{openTable(b, bs)}
			c := &Config{HeaderChecks: h, MIMEHeaderChecks: h, NestedHeaderChecks: h, BodyChecks: bd, BodyChecksSizeLimit: -1}
			b.SetBytes(total)
			b.ResetTimer()
			for range b.N {
				for _, m := range msgs {
					w := c.NewWalker(context.Background(), io.Discard, Hooks{}, LogInfo{})
					w.Write(m)
					if _, err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
	b.Run("notables", func(b *testing.B) {
		c := &Config{}
		b.SetBytes(total)
		for range b.N {
			for _, m := range msgs {
				w := c.NewWalker(context.Background(), io.Discard, Hooks{}, LogInfo{})
				w.Write(m)
				w.Close()
			}
		}
	})
}

// BenchmarkPostmap is the baseline: Postfix's postmap -hmq - with the
// header table and postmap -bmq - with the body table, on the same
// messages and rules. "startup" runs postmap as often on an empty
// message, to show how much of that is process start and table loading.
func BenchmarkPostmap(b *testing.B) {
	postmap := oracle.Require(b, "postmap")
	dir := oracle.ConfigDir(b, "")
	msgs, total := benchMessages(b)
	for _, typ := range []string{"regexp", "pcre"} {
		hs, bs := benchTables(b, typ)
		for _, name := range []string{"", "startup"} {
			b.Run(typ+name, func(b *testing.B) {
				b.SetBytes(total)
				for range b.N {
					for _, m := range msgs {
						in := postmapInput(m)
						if name == "startup" {
							in = []byte("\n")
						}
						for _, args := range [][]string{{"-hmq", "-", hs}, {"-bmq", "-", bs}} {
							if _, err := oracle.Exec(postmap, in, append([]string{"-c", dir}, args...)...); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
			})
		}
	}
}

// bulkInputs joins the sample's header blocks into one message of
// headers only, and its bodies into one message with a one-line header,
// as CRLF text: one postmap process then inspects all of it, so process
// start and table loading (which BenchmarkPostmap/*startup measures) no
// longer count, and the comparison is of the inspection itself.
func bulkInputs(b *testing.B) (headers, bodies []byte) {
	msgs, _ := benchMessages(b)
	headers = []byte{}
	bodies = []byte("X-Bulk: 1\r\n\r\n")
	for _, m := range msgs {
		i := bytes.Index(m, []byte("\r\n\r\n"))
		if i < 0 {
			headers = append(headers, m...)
			continue
		}
		headers = append(headers, m[:i+2]...)
		bodies = append(bodies, m[i+4:]...)
	}
	return append(headers, "\r\n"...), bodies
}

// BenchmarkBulk compares the Walker with postmap -hmq/-bmq on the same
// bulk inputs (bulkInputs), one postmap process per input: MB/s of
// headers and of bodies, for regexp and pcre tables.
func BenchmarkBulk(b *testing.B) {
	postmap := oracle.Require(b, "postmap")
	dir := oracle.ConfigDir(b, "")
	headers, bodies := bulkInputs(b)
	for _, typ := range []string{"regexp", "pcre"} {
		hs, bs := benchTables(b, typ)
		h, bd := lookupOnly{openTable(b, hs)}, lookupOnly{openTable(b, bs)}
		for _, part := range []struct {
			name, flag, spec string
			in               []byte
			c                *Config
		}{
			{"headers", "-hmq", hs, headers, &Config{HeaderChecks: h, MIMEHeaderChecks: h, NestedHeaderChecks: h}},
			{"bodies", "-bmq", bs, bodies, &Config{BodyChecks: bd, BodyChecksSizeLimit: -1}},
		} {
			b.Run(typ+"/"+part.name+"/walker", func(b *testing.B) {
				b.SetBytes(int64(len(part.in)))
				for range b.N {
					w := part.c.NewWalker(context.Background(), io.Discard, Hooks{}, LogInfo{})
					w.Write(part.in)
					w.Close()
				}
			})
			in := postmapInput(part.in)
			b.Run(typ+"/"+part.name+"/postmap", func(b *testing.B) {
				b.SetBytes(int64(len(part.in)))
				for range b.N {
					if _, err := oracle.Exec(postmap, in, "-c", dir, part.flag, "-", part.spec); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
