package maps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// TestInlVsPostmap runs postmap -q (and -s where Postfix supports it) on
// inline:, static:, unionmap:, pipemap: and unix: tables and compares.
func TestInlVsPostmap(t *testing.T) {
	oracle.Require(t, "postmap")
	cfg := oracle.ConfigDir(t, "")
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	u1, u2 := filepath.Join(dir, "u1"), filepath.Join(dir, "u2")
	os.WriteFile(u1, []byte("a 1\nb 2\n"), 0o644)
	os.WriteFile(u2, []byte("a x\nc 3\n1 one\nx ex\n"), 0o644)
	oracle.Run(t, nil, "postmap", "-c", cfg, "hash:"+u1)
	oracle.Run(t, nil, "postmap", "-c", cfg, "hash:"+u2)
	keys := []string{"a", "A", "b", "c", "1", "x", "key", "K2", "k4", "ä", "SS", "ß", "root", "ROOT", "nobody", "adm", "nosuch", "zzz"}
	specs := []string{
		"inline:{ Key=Value, { k2 = value with spaces }, {k4=a,b},k6=v6 k7=v7;x}",
		"inline:{ k=v, K=w }",
		"inline:{ {\"a b\"=c}, Ä=1, x==y }",
		"static:value",
		"static:{ value with  spaces }",
		"static:{{x}}",
		"unionmap:{hash:" + u1 + ", hash:" + u2 + "}",
		"unionmap:{hash:" + u2 + " inline:{a=z}}",
		"pipemap:{hash:" + u1 + ", hash:" + u2 + "}",
		"pipemap:{hash:" + u2 + ",hash:" + u2 + "}",
		"unix:passwd.byname",
		"unix:group.byname",
	}
	ctx := context.Background()
	in := []byte(strings.Join(keys, "\n") + "\n")
	for _, spec := range specs {
		m, err := Default().Open(ctx, spec, Options{})
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		want := oracle.Run(t, in, "postmap", "-c", cfg, "-q", "-", spec)
		var got bytes.Buffer
		for _, k := range keys {
			if v, ok, err := m.Lookup(ctx, k); err != nil {
				t.Errorf("%s %q: %v", spec, k, err)
			} else if ok {
				fmt.Fprintf(&got, "%s\t%s\n", k, v)
			}
		}
		if !bytes.Equal(got.Bytes(), want.Stdout) {
			t.Errorf("%s: got %q, postmap -q gives %q", spec, got.Bytes(), want.Stdout)
		}
		if it, ok := m.(Iterable); ok {
			dump := oracle.Run(t, nil, "postmap", "-c", cfg, "-s", spec)
			if got, w := srcEntries(t, m), srcSortedLines(dump.Stdout); strings.Join(got, "\n") != strings.Join(w, "\n") {
				t.Errorf("%s: entries %q, postmap -s %q", spec, got, w)
			}
			_ = it
		}
	}
}

// TestInlErrors checks the specs Postfix refuses, and the lookups that fail.
func TestInlErrors(t *testing.T) {
	ctx := context.Background()
	bad := map[string]string{
		"inline:{}":             "bad syntax",
		"inline:{ }":            "empty table",
		"inline:k=v":            "bad syntax",
		"inline:{k=v":           "bad syntax",
		"inline:{ {k=v}x }":     `syntax error after '}' in "{k=v}x"`,
		"inline:{ K5 = v5 }":    "missing '=' after attribute name",
		"static:{a}b":           "syntax error after '}'",
		"static:{ a  b ":        "missing '}'",
		"unionmap:{}":           "bad syntax",
		"pipemap:hash:x":        "bad syntax",
		"unionmap:{ {hash:x} }": "unsupported dictionary type",
		"unix:foo":              "unknown table",
	}
	for spec, want := range bad {
		_, err := Default().Open(ctx, spec, Options{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", spec, err, want)
		}
	}
	for _, spec := range []string{"inline:{ k= }", "static:{ }"} {
		m, err := Default().Open(ctx, spec, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.Lookup(ctx, "k"); !errors.Is(err, ErrEmptyValue) {
			t.Errorf("%s: lookup error %v, want ErrEmptyValue", spec, err)
		}
	}
	for _, spec := range []string{"fail:x", "unionmap:{static:a, fail:x}", "pipemap:{static:a, fail:x}"} {
		m, err := Default().Open(ctx, spec, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := m.Lookup(ctx, "k"); ok || !IsTemporary(err) {
			t.Errorf("%s: ok=%v err=%v, want a temporary error", spec, ok, err)
		}
	}
	m, _ := Default().Open(ctx, "static:v", Options{})
	if v, ok, _ := m.Lookup(ctx, ""); !ok || v != "v" {
		t.Errorf("static with empty key: %q %v", v, ok)
	}
	for spec, want := range map[string]Kind{"unionmap:{static:a, fail:x}": Fixed, "pipemap:{inline:{a=b}}": Fixed} {
		m, _ := Default().Open(ctx, spec, Options{})
		if KindOf(m) != want {
			t.Errorf("%s: kind %v", spec, KindOf(m))
		}
	}
}

func TestInlUnixFiles(t *testing.T) {
	dir := t.TempDir()
	pw, gr := filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
	os.WriteFile(pw, []byte("bad line\nalice:x:0100:7:Alice A:/home/alice:/bin/sh\nalice:x:2:2::/:/bin/false\n"), 0o644)
	os.WriteFile(gr, []byte("staff:x:50:alice,,bob\n"), 0o644)
	oldP, oldG := inlPasswdFile, inlGroupFile
	inlPasswdFile, inlGroupFile = pw, gr
	defer func() { inlPasswdFile, inlGroupFile = oldP, oldG }()
	ctx := context.Background()
	p, _ := openUnix(ctx, "passwd.byname", Options{})
	if v, ok, _ := p.Lookup(ctx, "ALICE"); !ok || v != "alice:x:100:7:Alice A:/home/alice:/bin/sh" {
		t.Errorf("alice = %q %v", v, ok)
	}
	g, _ := openUnix(ctx, "group.byname", Options{})
	if v, ok, _ := g.Lookup(ctx, "staff"); !ok || v != "staff:x:50:alice,bob" {
		t.Errorf("staff = %q %v", v, ok)
	}
}

// TestInlSyntaxVsPostmap opens inline: specs that test the item syntax and
// compares with postmap -s: the same entries, or the same fatal message.
func TestInlSyntaxVsPostmap(t *testing.T) {
	oracle.Require(t, "postmap")
	cfg := oracle.ConfigDir(t, "")
	specs := []string{
		`inline:{ {key with = spaces} }`,
		`inline:{ {"a b"=c} }`,
		`inline:{ {"a b = c} }`,
		`inline:{ "a b"=c }`,
		`inline:{ {a\ b=c} }`,
		`inline:{ { =c} }`,
		`inline:{ {   } }`,
		`inline:{ {} }`,
		`inline:{ a=b=c }`,
		`inline:{ {k = v v} }`,
		`inline:{ k="v" }`,
		`inline:{ {"k"  =  v } }`,
		`inline:{ {k"x y"z = v} }`,
		`inline:{ {a\\=b = c} }`,
		`inline:{ {a\=b = c} }`,
		`inline:{ "a=b" }`,
		`inline:{ {k\ } }`,
		`inline:{ {k\} }`,
		`inline:{ , }`,
		`inline:{ =v }`,
		`inline:{ {"x=y}}`,
		`inline:{ {k=v }`,
		`inline:{ {k=v}x }`,
		`inline:{ a={b c} }`,
		`inline:{ {a}=b }`,
		`inline:{ {{a}=b} }`,
		`inline:{ k=v, {x = {y z}} }`,
		`inline:{k=v}x`,
		`inline:{ k=v }}`,
		"inline:{ {k\t=\tv\t} }",
	}
	// Postfix sleeps a second before a fatal exit: run them side by side.
	postmap := oracle.Require(t, "postmap")
	reals := make([]oracle.Result, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		wg.Go(func() {
			cmd := exec.Command(postmap, "-c", cfg, "-s", spec)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			reals[i] = oracle.Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}
			if err != nil {
				reals[i].Code = 1
			}
		})
	}
	wg.Wait()
	for i, spec := range specs {
		t.Run(spec, func(t *testing.T) {
			real := reals[i]
			m, err := Default().Open(context.Background(), spec, Options{})
			if real.Code != 0 {
				want := strings.TrimSuffix(strings.TrimPrefix(string(real.Stderr), "postmap: fatal: "), "\n")
				if err == nil || strings.TrimPrefix(err.Error(), "maps: ") != want {
					t.Errorf("error %v, postmap says %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v, postmap accepts it: %q", err, real.Stdout)
			}
			if got, want := srcEntries(t, m), srcSortedLines(real.Stdout); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("entries %q, postmap -s %q", got, want)
			}
		})
	}
}
