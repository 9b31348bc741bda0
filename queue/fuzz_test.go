package queue

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseFile feeds the queue-file reader arbitrary bytes: it must not
// panic, and what it accepts must be self-consistent. The seed corpus in
// testdata/fuzz/FuzzParseFile holds real queue files (with status
// records, a torn tail, a body-less message).
func FuzzParseFile(f *testing.F) {
	f.Add([]byte{})
	f.Add(makeHeader(0))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseFile(bytes.NewReader(data), int64(len(data)), true)
		if err != nil {
			return
		}
		e := p.env
		if p.validEnd > int64(len(data)) || p.validEnd < headerSize+e.ContentLen+recordOverhead {
			t.Fatalf("validEnd %d outside the file (%d bytes, content %d)", p.validEnd, len(data), e.ContentLen)
		}
		if len(p.status) != len(e.Env.Recipients) {
			t.Fatalf("%d statuses for %d recipients", len(p.status), len(e.Env.Recipients))
		}
		if e.HeaderLen > e.BodyStart || e.BodyStart > e.ContentLen {
			t.Fatalf("header %d body %d content %d", e.HeaderLen, e.BodyStart, e.ContentLen)
		}
		// What parses once parses again after a status record is added.
		more := appendRecord(bytes.Clone(data[:p.validEnd]), kindStatus, []byte(`{"attrs":{"k":"v"}}`))
		p2, err := parseFile(bytes.NewReader(more), int64(len(more)), true)
		if err != nil || p2.attrs["k"] != "v" {
			t.Fatalf("appending a status record broke the file: %v", err)
		}
	})
}

// FuzzJournal feeds the journal scanner arbitrary bytes: no panic, and
// every message it returns has a valid ID and state.
func FuzzJournal(f *testing.F) {
	head := append([]byte(journalMagic+"\x00\x00\x00\x00"), 0, 0, 0, 0, 0, 0, 0, 7)
	valid := appendJournalRecord(bytes.Clone(head), 7, kindJournalMessage, journalMessage("4jbz9003yrz1SGMm", Incoming, []byte("PKQF")))
	f.Add(valid)
	f.Add(appendJournalRecord(bytes.Clone(valid), 7, kindJournalTombstone, []byte("4jbz9003yrz1SGMm")))
	f.Add(appendJournalRecord(bytes.Clone(valid), 6, kindJournalTombstone, []byte("4jbz9003yrz1SGMm")))
	f.Add(valid[:len(valid)-2])
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, order, _, err := scanJournal(bytes.NewReader(data), int64(len(data)), journalEpoch(bytes.NewReader(data), int64(len(data))))
		if err != nil {
			t.Fatal(err)
		}
		if len(order) != len(msgs) {
			t.Fatalf("%d in order, %d messages", len(order), len(msgs))
		}
		for id, e := range msgs {
			if !ValidID(id) || !validState(e.state) {
				t.Fatalf("bad entry %q %q", id, e.state)
			}
		}
	})
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"4Yxk3B5xWJzBq2", "0000000000z0", "3F1A2B4C5D", "zzzzzzzzzzz1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		created, ino, err := ParseID(id)
		if err != nil {
			return
		}
		if !ValidID(id) {
			t.Fatalf("ParseID accepted %q, which ValidID refuses", id)
		}
		if created.Unix() >= 0 && created.Unix() < 1<<40 {
			back := formatID(created, ino)
			if c2, i2, err := ParseID(back); err != nil || !c2.Equal(created) || i2 != ino {
				t.Fatalf("%q -> %v %d -> %q does not round-trip", id, created, ino, back)
			}
		}
	})
}

// TestWriteFuzzSeeds regenerates the seed corpus (real queue files) when
// POSTKIT_WRITE_FUZZ_SEEDS is set; otherwise it checks that it is there.
func TestWriteFuzzSeeds(t *testing.T) {
	seedDir := filepath.Join("testdata", "fuzz", "FuzzParseFile")
	if os.Getenv("POSTKIT_WRITE_FUZZ_SEEDS") != "" {
		q := openTest(t, t.TempDir(), Options{})
		ctx := context.Background()
		a := commit(t, q, testContent, testEnvelope(3))
		q.MarkRecipients(ctx, a, []Status{{Rcpt: 1, Outcome: Delayed, DSN: "4.4.1", Reason: "refused"}})
		q.SetAttr(ctx, a, map[string]string{"delay_warned": "1"})
		b := commit(t, q, "Subject: no body\r\n", testEnvelope(1))
		c := commit(t, q, "", testEnvelope(0))
		os.MkdirAll(seedDir, 0o755)
		for i, id := range []string{a, b, c} {
			data, err := os.ReadFile(filepath.Join(q.Dir(), "incoming", id))
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				data = append(data, kindStatus, 0, 0, 0, 9, '{') // a torn tail
			}
			seed := []byte("go test fuzz v1\n[]byte(" + quoteGo(data) + ")\n")
			if err := os.WriteFile(filepath.Join(seedDir, "seed"+string(rune('0'+i))), seed, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	ents, err := os.ReadDir(seedDir)
	if err != nil || len(ents) < 3 {
		t.Fatalf("seed corpus: %v, %d files", err, len(ents))
	}
}

func quoteGo(b []byte) string {
	var s bytes.Buffer
	s.WriteByte('"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			s.WriteByte('\\')
			s.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			s.WriteByte(c)
		default:
			s.WriteString(`\x`)
			s.WriteByte("0123456789abcdef"[c>>4])
			s.WriteByte("0123456789abcdef"[c&15])
		}
	}
	s.WriteByte('"')
	return s.String()
}
