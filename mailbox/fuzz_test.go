package mailbox

import (
	"bufio"
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzFolderName(f *testing.F) {
	for _, s := range []string{"Sent", "Archive.2024", "..", ".x", "a..b", "a/b", "INBOX", "&AOQ-", "x\x00", "Ü.ö"} {
		f.Add(s)
	}
	root := "/srv/mail/user/Maildir"
	s := &Store{root: root}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := s.FolderPath(name)
		if err != nil {
			return
		}
		if strings.EqualFold(name, Inbox) {
			if p != root {
				t.Fatalf("INBOX -> %q", p)
			}
			return
		}
		if filepath.Dir(p) != root || filepath.Base(p) != "."+name || strings.ContainsAny(name, "/\x00") {
			t.Fatalf("%q -> %q escapes or renames the folder", name, p)
		}
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
			t.Fatalf("%q accepted with an empty level", name)
		}
	})
}

func FuzzUIDList(f *testing.F) {
	f.Add([]byte("postkit-uidlist 1 V1732640461 N4\n1 1732640461.V801I3a2bcM123456.mail\n3 b\n"))
	f.Add([]byte("postkit-uidlist 1 V1 N1\n"))
	f.Add([]byte("postkit-uidlist 1 V01 N2\n1 x:2,S\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseUIDList(bytes.NewReader(data))
		if err != nil {
			return
		}
		again, err := ParseUIDList(bytes.NewReader(l.Marshal()))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", l.Marshal(), err)
		}
		if !bytes.Equal(again.Marshal(), l.Marshal()) {
			t.Fatalf("round trip changed %q to %q", l.Marshal(), again.Marshal())
		}
		for _, e := range l.Entries {
			if e.UID == 0 || e.UID >= l.Next || strings.ContainsAny(e.Key, ":/ \n") {
				t.Fatalf("accepted entry %+v (next %d)", e, l.Next)
			}
		}
	})
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{"1732640461.V801I3a2bcM123456.mail:2,FRS", "x:2,", "x", "x:1,abc", "x:2,Sab", "x:2,ZZS", ":2,S", ".hidden", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		in, err := ParseName(name)
		if err != nil {
			return
		}
		out := in.Name()
		if !in.HasInfo {
			if in.Key != name {
				t.Fatalf("key %q of %q", in.Key, name)
			}
			return
		}
		again, err := ParseName(out)
		if err != nil {
			t.Fatalf("rendered %q does not parse: %v", out, err)
		}
		if again.Key != in.Key || again.Flags != in.Flags || again.Raw != in.Raw || len(again.Extra) != len(in.Extra) {
			t.Fatalf("%q -> %q -> %+v, was %+v", name, out, again, in)
		}
		if fl, err := ParseFlags(in.Flags.String()); err != nil || fl != in.Flags {
			t.Fatalf("flags %v do not round-trip", in.Flags)
		}
	})
}

func FuzzScanMbox(f *testing.F) {
	f.Add([]byte("From a@b  Tue Nov 26 17:01:01 2024\nSubject: x\n\n>From y\n\nFrom c@d  Tue Nov 26 17:01:01 2024\nStatus: RO\nX-Status: AF\n\nbody\n\n"))
	f.Add([]byte("not an mbox\n"))
	f.Add([]byte("From \n\n\nFrom \nFrom x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := ScanMbox(bytes.NewReader(data))
		if err == nil {
			var last int64
			for _, m := range msgs {
				if m.Offset < last || m.Size < 0 || m.Offset+m.Size > int64(len(data)) {
					t.Fatalf("message %+v out of range (file %d bytes)", m, len(data))
				}
				last = m.Offset + m.Size
				var b bytes.Buffer
				b.ReadFrom(m.Reader(bytes.NewReader(data)))
				if b.Len() > int(m.Size) {
					t.Fatalf("unquoted message longer than stored")
				}
			}
		}
		// What DeliverMbox writes for data is read back as one message
		// with the quoted bytes.
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		w.WriteString(FromLine("a@example.com", testTime) + "\n")
		if err := writeQuoted(context.Background(), w, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		msgs, err = ScanMbox(bytes.NewReader(out.Bytes()))
		if err != nil || len(msgs) != 1 {
			t.Fatalf("delivered %q: %d messages, %v", data, len(msgs), err)
		}
		var raw bytes.Buffer
		raw.ReadFrom(msgs[0].Raw(bytes.NewReader(out.Bytes())))
		want := mboxQuote(string(data))
		if len(data) == 0 {
			want = ""
		}
		if raw.String() != want {
			t.Fatalf("delivered %q, read back %q, want %q", data, raw.String(), want)
		}
	})
}

func FuzzKeywords(f *testing.F) {
	f.Add([]byte("0 Junk\n1 $Forwarded\n2 Other\n"))
	f.Add([]byte("25 z\n26 toolarge\n-1 neg\nx y\n3 bad(name\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		kw := parseKeywords(data)
		if len(kw) > 26 {
			t.Fatalf("%d keyword slots", len(kw))
		}
		for _, k := range kw {
			if k != "" && !validKeyword(k) {
				t.Fatalf("accepted keyword %q", k)
			}
		}
		names := keywordNames(kw, "abcdefghijklmnopqrstuvwxyzABC")
		if len(names) > len(kw) {
			t.Fatalf("%d names from %d slots", len(names), len(kw))
		}
	})
}
