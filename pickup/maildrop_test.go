package pickup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleEnvelope() *Envelope {
	return &Envelope{
		Arrival:           time.Date(2026, 11, 28, 4, 0, 0, 123456789, time.UTC),
		UID:               1000,
		User:              "alice",
		Sender:            "alice",
		FullName:          "Alice \"Al\" Example\n",
		ExtractRecipients: true,
		Local:             true,
		Proto:             "local",
		Recipients: []Recipient{
			{Addr: "bob@example.com"},
			{Addr: "odd\nname@example.com", Notify: []string{"SUCCESS", "FAILURE"}},
			{Addr: ""},
		},
		Body:  "8BITMIME",
		Ret:   "HDRS",
		EnvID: "env-1",
	}
}

func encode(t testing.TB, env *Envelope, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	e, err := NewEncoder(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(e, content); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(env); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	for _, content := range []string{"", "Subject: x\r\n\r\nbody\r\n", "no headers\r\n", strings.Repeat("x", 100000) + "\r\n", "end 1 2 3\n"} {
		env := sampleEnvelope()
		data := encode(t, env, content)
		got, sec, err := Decode(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if !reflect.DeepEqual(got, env) {
			t.Errorf("envelope:\n got %+v\nwant %+v", got, env)
		}
		c, _ := io.ReadAll(sec)
		if string(c) != content {
			t.Errorf("content %q, want %q", truncate(string(c)), truncate(content))
		}
	}
}

// Every truncation and every single-byte change of a file is detected.
func TestCorruptionDetected(t *testing.T) {
	data := encode(t, sampleEnvelope(), "Subject: x\r\n\r\nbody\r\n")
	for n := 0; n < len(data); n++ {
		if _, _, err := Decode(bytes.NewReader(data[:n]), int64(n)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d of %d: err %v, want ErrCorrupt", n, len(data), err)
		}
	}
	for i := 0; i < len(data); i++ {
		bad := bytes.Clone(data)
		bad[i] ^= 0x20
		if _, _, err := Decode(bytes.NewReader(bad), int64(len(bad))); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d changed (%q): err %v, want ErrCorrupt", i, data[i], err)
		}
	}
	extra := append(bytes.Clone(data), '\n')
	if _, _, err := Decode(bytes.NewReader(extra), int64(len(extra))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("byte appended: err %v, want ErrCorrupt", err)
	}
}

// A file whose checksum is right but whose envelope is not what a writer
// makes is refused too (a file written by hand or a newer version).
func TestBadEnvelope(t *testing.T) {
	base := "arrival 2026-11-28T04:00:00Z\nuid 0\nuser \"root\"\nsender \"root\"\nrewrite local\nproto local\n"
	tests := []struct{ name, env, want string }{
		{"ok", base, ""},
		{"unknown keyword", base + "color blue\n", "unknown keyword"},
		{"unquoted", strings.Replace(base, `"root"`, "root", 1), "bad user"},
		{"no sender", strings.Replace(base, "sender \"root\"\n", "", 1), "without sender"},
		{"no arrival", strings.Replace(base, "arrival 2026-11-28T04:00:00Z\n", "", 1), "without arrival"},
		{"twice", base + "uid 1\n", "second"},
		{"notify first", base + "notify \"NEVER\"\n", "bad notify"},
		{"notify twice", base + "rcpt \"a\"\nnotify \"NEVER\"\nnotify \"NEVER\"\n", "bad notify"},
		{"bad rewrite", strings.Replace(base, "rewrite local", "rewrite other", 1), "rewrite context"},
		{"no newline", strings.TrimSuffix(base, "\n"), "inside a line"},
		{"blank line", base + "\n", "has no value"},
		{"negative uid", strings.Replace(base, "uid 0", "uid -1", 1), "bad uid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := rawFile("content\r\n", tc.env)
			_, _, err := Decode(bytes.NewReader(data), int64(len(data)))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("err %v", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrCorrupt with %q", err, tc.want)
			}
		})
	}
}

// rawFile builds a file with a correct trailer around any envelope text.
func rawFile(content, env string) []byte {
	var b bytes.Buffer
	e, _ := NewEncoder(&b)
	io.WriteString(e, content)
	b.WriteString(env)
	e.h.Write([]byte(env))
	trailer := []byte("end ")
	trailer = append(trailer, []byte(pad20(len(content))+" "+pad20(len(env))+" ")...)
	trailer = append(trailer, []byte(hexsum(e))...)
	trailer = append(trailer, '\n')
	b.Write(trailer)
	return b.Bytes()
}

func pad20(n int) string {
	s := strings.Repeat("0", 20) + itoa(n)
	return s[len(s)-20:]
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

func hexsum(e *Encoder) string {
	const digits = "0123456789abcdef"
	var out []byte
	for _, c := range e.h.Sum(nil) {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestSubmitDurableAndClean(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "maildrop")
	if err := Create(dir, 0); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != DirMode {
		t.Errorf("maildrop mode %v, want %v", fi.Mode(), DirMode)
	}
	env := sampleEnvelope()
	name, err := Submit(context.Background(), dir, env, strings.NewReader("Subject: x\r\n\r\nhi\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{MarkerFile, name, CorruptDir, RejectedDir}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("maildrop holds %q, want %q (no temporary file left)", names, want)
	}
	fi, err = os.Stat(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != FileMode {
		t.Errorf("file mode %v, want %v", fi.Mode().Perm(), os.FileMode(FileMode))
	}
	f, _ := os.Open(filepath.Join(dir, name))
	defer f.Close()
	got, sec, err := Decode(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, env) {
		t.Errorf("envelope %+v, want %+v", got, env)
	}
	c, _ := io.ReadAll(sec)
	if string(c) != "Subject: x\r\n\r\nhi\r\n" {
		t.Errorf("content %q", c)
	}

	// An aborted writer and a failed read leave nothing behind.
	w, err := NewWriter(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "partial")
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := Submit(context.Background(), dir, env, io.MultiReader(strings.NewReader("x"), errReader{})); err == nil {
		t.Fatal("Submit with a failing reader succeeded")
	}
	ents, _ = os.ReadDir(dir)
	if len(ents) != 4 {
		t.Errorf("after aborts the maildrop holds %d entries, want 4", len(ents))
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("read error") }

// FuzzDecode: any bytes give an envelope or an error, never a panic, and
// a file that decodes re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(encode(f, sampleEnvelope(), "Subject: x\r\n\r\nbody\r\n"))
	f.Add(encode(f, &Envelope{Arrival: time.Unix(0, 0), Proto: "ESMTP", Helo: "h"}, ""))
	f.Add(rawFile("x\r\n", "arrival 2026-11-28T04:00:00Z\nuid 0\nuser \"root\"\nsender \"\"\nrewrite remote\nproto local\nrcpt \"a\"\nnotify \"NEVER\"\n"))
	f.Add([]byte(Magic + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, sec, err := Decode(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		content, err := io.ReadAll(sec)
		if err != nil {
			t.Fatal(err)
		}
		again := encode(t, env, string(content))
		env2, sec2, err := Decode(bytes.NewReader(again), int64(len(again)))
		if err != nil {
			t.Fatalf("re-encoded file does not decode: %v", err)
		}
		c2, _ := io.ReadAll(sec2)
		if !reflect.DeepEqual(env, env2) || !bytes.Equal(content, c2) {
			t.Fatalf("round trip changed the message")
		}
	})
}
