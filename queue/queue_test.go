package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
)

func TestCommitRead(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	env := testEnvelope(3)
	want := *env
	id := commit(t, q, testContent, env)
	if env.QueueID != id {
		t.Errorf("env.QueueID = %q, want %q", env.QueueID, id)
	}
	if got := names(t, q, Incoming); !slices.Equal(got, []string{id}) {
		t.Fatalf("incoming holds %v, want [%s]", got, id)
	}
	m, err := q.Read(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want.QueueID = id
	if !m.Envelope.Arrival.Equal(want.Arrival) {
		t.Errorf("arrival %v, want %v", m.Envelope.Arrival, want.Arrival)
	}
	m.Envelope.Arrival = want.Arrival
	if !reflect.DeepEqual(m.Envelope, want) {
		t.Errorf("envelope\n got %+v\nwant %+v", m.Envelope, want)
	}
	if m.State != Incoming || m.Size != int64(len(testContent)) {
		t.Errorf("state %s size %d", m.State, m.Size)
	}
	if got := readAll(t, m.Content()); got != testContent {
		t.Errorf("content %q", got)
	}
	if got := readAll(t, m.Header()); got != "From: alice@example.com\r\nSubject: hi\r\n" {
		t.Errorf("header %q", got)
	}
	if got := readAll(t, m.Body()); got != "body line 1\r\nbody line 2\r\n" {
		t.Errorf("body %q", got)
	}
	if len(m.Status) != 3 || !slices.Equal(m.Pending(), []int{0, 1, 2}) {
		t.Errorf("status %+v pending %v", m.Status, m.Pending())
	}
}

// The header/body split for content shapes a writer may produce.
func TestHeaderBodySplit(t *testing.T) {
	cases := []struct{ content, header, body string }{
		{"A: 1\r\n\r\nB\r\n", "A: 1\r\n", "B\r\n"},
		{"A: 1\n\nB\n", "A: 1\n", "B\n"},
		{"\r\nbody only\r\n", "", "body only\r\n"},
		{"A: 1\r\nB: 2\r\n", "A: 1\r\nB: 2\r\n", ""},
		{"", "", ""},
		{"A: 1\r\n\r\n", "A: 1\r\n", ""},
		{"A: x\r\r\n\r\nB", "A: x\r\r\n", "B"},
	}
	q := openTest(t, t.TempDir(), Options{})
	for _, c := range cases {
		id := commit(t, q, c.content, testEnvelope(1))
		m, err := q.Read(id)
		if err != nil {
			t.Fatal(err)
		}
		if h, b := readAll(t, m.Header()), readAll(t, m.Body()); h != c.header || b != c.body {
			t.Errorf("%q: header %q body %q, want %q %q", c.content, h, b, c.header, c.body)
		}
		m.Close()
	}
}

func TestCommitHold(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	env := testEnvelope(1)
	env.Hold, env.HoldReason = true, "header Subject: x"
	id := commit(t, q, testContent, env)
	if got := names(t, q, Hold); !slices.Equal(got, []string{id}) {
		t.Errorf("hold holds %v", got)
	}
	if got := names(t, q, Incoming); len(got) != 0 {
		t.Errorf("incoming holds %v", got)
	}
}

func TestAbort(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	ctx := context.Background()
	f, err := q.Create(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte(testContent))
	if got := names(t, q, Incoming); len(got) != 1 || !strings.HasPrefix(got[0], ".") {
		t.Fatalf("while writing, incoming holds %v, want one temporary file", got)
	}
	if l, _ := q.List(Incoming); len(l) != 0 {
		t.Errorf("List shows an uncommitted file: %v", l)
	}
	if err := f.Abort(); err != nil {
		t.Fatal(err)
	}
	if got := names(t, q, Incoming); len(got) != 0 {
		t.Errorf("after Abort incoming holds %v", got)
	}
	if err := f.Commit(ctx, testEnvelope(1)); err == nil {
		t.Error("Commit after Abort succeeded")
	}
	if _, err := f.Write([]byte("x")); err == nil {
		t.Error("Write after Abort succeeded")
	}
}

func TestMarkRecipients(t *testing.T) {
	clock := NewFakeClock(time.Date(2026, 11, 28, 5, 0, 0, 0, time.UTC))
	q := openTest(t, t.TempDir(), Options{Clock: clock})
	ctx := context.Background()
	id := commit(t, q, testContent, testEnvelope(4))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(q.MarkRecipients(ctx, id, []Status{
		{Rcpt: 0, Outcome: Delivered, DSN: "2.0.0", Relay: "mx.example.net[192.0.2.9]:25", Reason: "250 ok"},
		{Rcpt: 2, Outcome: Delayed, DSN: "4.4.1", Reason: "connect to mx.example.net: Connection refused"},
	}))
	clock.Advance(time.Hour)
	must(q.MarkRecipients(ctx, id, []Status{
		{Rcpt: 2, Outcome: Failed, DSN: "5.1.1", Reason: "550 no such user"},
		{Rcpt: 3, Outcome: Delayed, DSN: "4.0.0", Reason: "later"},
	}))
	must(q.SetAttr(ctx, id, map[string]string{"delay_warned": "yes", "x": "1"}))
	must(q.SetAttr(ctx, id, map[string]string{"x": ""}))
	m, err := q.Read(id)
	must(err)
	defer m.Close()
	want := []Status{
		{Rcpt: 0, Outcome: Delivered, DSN: "2.0.0", Relay: "mx.example.net[192.0.2.9]:25", Reason: "250 ok", At: clock.Now().Add(-time.Hour)},
		{Rcpt: 1},
		{Rcpt: 2, Outcome: Failed, DSN: "5.1.1", Reason: "550 no such user", At: clock.Now()},
		{Rcpt: 3, Outcome: Delayed, DSN: "4.0.0", Reason: "later", At: clock.Now()},
	}
	for i := range m.Status {
		if !m.Status[i].At.Equal(want[i].At) {
			t.Errorf("status %d at %v, want %v", i, m.Status[i].At, want[i].At)
		}
		m.Status[i].At = want[i].At
	}
	if !reflect.DeepEqual(m.Status, want) {
		t.Errorf("status\n got %+v\nwant %+v", m.Status, want)
	}
	if !slices.Equal(m.Pending(), []int{1, 3}) {
		t.Errorf("pending %v", m.Pending())
	}
	if !reflect.DeepEqual(m.Attrs, map[string]string{"delay_warned": "yes"}) {
		t.Errorf("attrs %v", m.Attrs)
	}
	if err := q.MarkRecipients(ctx, id, []Status{{Rcpt: 4, Outcome: Delivered}}); err == nil {
		t.Error("a status for recipient 4 of 4 was accepted")
	}
	if err := q.MarkRecipients(ctx, "nosuchid", []Status{{Rcpt: 0}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown ID: %v", err)
	}
}

// A status record torn by a crash (cut short, or failing its CRC) is
// ignored, and the next one replaces it.
func TestTornStatusRecord(t *testing.T) {
	for _, tail := range [][]byte{
		{kindStatus, 0, 0, 1},                            // cut in the length
		{kindStatus, 0, 0, 0, 10, '{', '"'},              // cut in the payload
		appendRecord(nil, kindStatus, []byte(`{}`))[:10], // cut in the CRC
		func() []byte {
			r := appendRecord(nil, kindStatus, []byte(`{"status":[{"rcpt":0,"outcome":1}]}`))
			r[8] ^= 1
			return r
		}(),
	} {
		q := openTest(t, t.TempDir(), Options{})
		ctx := context.Background()
		id := commit(t, q, testContent, testEnvelope(2))
		p := filepath.Join(q.Dir(), "incoming", id)
		f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		f.Write(tail)
		f.Close()
		m, err := q.Read(id)
		if err != nil {
			t.Fatalf("tail %q: %v", tail, err)
		}
		if m.Status[0].Outcome != Pending {
			t.Errorf("tail %q: a torn record counted: %+v", tail, m.Status[0])
		}
		m.Close()
		if err := q.MarkRecipients(ctx, id, []Status{{Rcpt: 1, Outcome: Delivered}}); err != nil {
			t.Fatal(err)
		}
		m, err = q.Read(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Status[1].Outcome != Delivered {
			t.Errorf("tail %q: the record after a torn one is lost: %+v", tail, m.Status)
		}
		m.Close()
	}
}

func TestMoves(t *testing.T) {
	clock := NewFakeClock(time.Date(2026, 11, 28, 5, 0, 0, 0, time.UTC))
	q := openTest(t, t.TempDir(), Options{Clock: clock})
	ctx := context.Background()
	id := commit(t, q, testContent, testEnvelope(1))
	state := func() State {
		t.Helper()
		m, err := q.Read(id)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		return m.State
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(q.Move(ctx, id, Active))
	if s := state(); s != Active {
		t.Fatalf("after Move(active): %s", s)
	}
	retry := clock.Now().Add(300 * time.Second)
	must(q.Defer(ctx, id, retry))
	l, err := q.List(Deferred)
	must(err)
	if len(l) != 1 || l[0].ID != id || !l[0].ModTime.Equal(retry) {
		t.Fatalf("deferred list %+v, want %s due %v", l, id, retry)
	}
	must(q.Hold(ctx, id))
	if s := state(); s != Hold {
		t.Fatalf("after Hold: %s", s)
	}
	if err := q.Hold(ctx, id); err == nil {
		t.Error("Hold of a held message succeeded")
	}
	clock.Advance(time.Minute)
	must(q.Release(ctx, id))
	l, _ = q.List(Deferred)
	if len(l) != 1 || !l[0].ModTime.Equal(clock.Now()) {
		t.Fatalf("after Release: %+v, want deferred due now", l)
	}
	if err := q.Release(ctx, id); err == nil {
		t.Error("Release of a message not on hold succeeded")
	}
	must(q.Requeue(ctx, id))
	if s := state(); s != Incoming {
		t.Fatalf("after Requeue: %s", s)
	}
	must(q.Move(ctx, id, Corrupt))
	if err := q.Requeue(ctx, id); err == nil {
		t.Error("Requeue from corrupt succeeded")
	}
	if err := q.Move(ctx, id, "bogus"); err == nil {
		t.Error("Move to a bogus state succeeded")
	}
	must(q.Remove(ctx, id))
	for _, s := range States {
		if n := names(t, q, s); len(n) != 0 {
			t.Errorf("after Remove %s holds %v", s, n)
		}
	}
	if err := q.Remove(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := q.Read("../VERSION"); !errors.Is(err, ErrBadID) {
		t.Errorf("Read(../VERSION): %v", err)
	}
}

func TestListOrder(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	var ids []string
	for range 50 {
		ids = append(ids, commit(t, q, testContent, testEnvelope(1)))
	}
	l, err := q.List(Incoming)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range l {
		got = append(got, e.ID)
	}
	if !slices.Equal(got, ids) {
		t.Errorf("List order\n got %v\nwant %v", got, ids)
	}
	if err := q.Walk("nope", func(Entry) error { return nil }); err == nil {
		t.Error("Walk of a bogus state succeeded")
	}
	stop := errors.New("stop")
	n := 0
	if err := q.Walk(Incoming, func(Entry) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("Walk did not stop: %v after %d", err, n)
	}
}

// Damage anywhere in the content, envelope or header is detected.
func TestCorruptDetected(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	id := commit(t, q, testContent, testEnvelope(1))
	p := filepath.Join(dir, "incoming", id)
	orig, _ := os.ReadFile(p)
	for _, off := range []int{0, 4, 9, 15, headerSize, headerSize + 20, headerSize + len(testContent) + 1,
		headerSize + len(testContent) + 30, len(orig) - 1} {
		b := slices.Clone(orig)
		b[off] ^= 0x20
		os.WriteFile(p, b, 0o600)
		m, err := q.Read(id)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("byte %d flipped: Read gave %v", off, err)
		}
		if m != nil {
			m.Close()
		}
	}
	os.WriteFile(p, orig[:len(orig)-3], 0o600)
	if _, err := q.Read(id); !errors.Is(err, ErrCorrupt) {
		t.Errorf("truncated: Read gave %v", err)
	}
}

func TestRecovery(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	ctx := context.Background()
	good := commit(t, q, testContent, testEnvelope(1))
	active := commit(t, q, testContent, testEnvelope(1))
	broken := commit(t, q, testContent, testEnvelope(1))
	deferred := commit(t, q, testContent, testEnvelope(1))
	if err := q.Move(ctx, active, Active); err != nil {
		t.Fatal(err)
	}
	if err := q.Defer(ctx, deferred, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// An uncommitted file, as a kill during writing leaves it.
	f, _ := q.Create(ctx, time.Time{})
	f.Write([]byte(testContent))
	tmpName := names(t, q, Incoming)
	// A flipped byte in the content of a committed message.
	p := filepath.Join(dir, "incoming", broken)
	b, _ := os.ReadFile(p)
	b[headerSize+3] ^= 1
	os.WriteFile(p, b, 0o600)
	q.Close()

	q = openTest(t, dir, Options{})
	r := q.Recovery()
	if len(r.Removed) != 1 || !slices.Contains(tmpName, strings.TrimPrefix(r.Removed[0], "incoming/")) {
		t.Errorf("removed %v (incoming held %v)", r.Removed, tmpName)
	}
	if !slices.Equal(r.Requeued, []string{active}) {
		t.Errorf("requeued %v, want %s", r.Requeued, active)
	}
	if !slices.Equal(r.Corrupt, []string{broken}) {
		t.Errorf("corrupt %v, want %s", r.Corrupt, broken)
	}
	in := names(t, q, Incoming)
	slices.Sort(in)
	want := []string{good, active}
	slices.Sort(want)
	if !slices.Equal(in, want) {
		t.Errorf("incoming %v, want %v", in, want)
	}
	if got := names(t, q, Corrupt); !slices.Equal(got, []string{broken}) {
		t.Errorf("corrupt/ holds %v", got)
	}
	if got := names(t, q, Deferred); !slices.Equal(got, []string{deferred}) {
		t.Errorf("deferred/ holds %v", got)
	}
}

func TestOpenLockAndMarker(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	if _, err := Open(dir, Options{Logger: quiet}); err == nil {
		t.Error("a second Open of a queue in use succeeded")
	}
	q.Close()
	if q2, err := Open(dir, Options{Logger: quiet}); err != nil {
		t.Errorf("Open after Close: %v", err)
	} else {
		q2.Close()
	}
	for _, s := range States {
		fi, err := os.Stat(filepath.Join(dir, string(s)))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want mode 0700", s, fi.Mode(), err)
		}
	}
	os.WriteFile(filepath.Join(dir, markerName), []byte("postkit-queue 99\n"), 0o600)
	if _, err := Open(dir, Options{Logger: quiet}); err == nil || !strings.Contains(err.Error(), "99") {
		t.Errorf("Open of another version: %v", err)
	}
	foreign := t.TempDir()
	os.WriteFile(filepath.Join(foreign, "precious.txt"), []byte("x"), 0o600)
	if _, err := Open(foreign, Options{Logger: quiet}); err == nil {
		t.Error("Open of a foreign non-empty directory succeeded")
	}
	if _, err := os.Stat(filepath.Join(foreign, "precious.txt")); err != nil {
		t.Error(err)
	}
}

func TestFileMode(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	id := commit(t, q, testContent, testEnvelope(1))
	fi, err := os.Stat(filepath.Join(q.Dir(), "incoming", id))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("queue file mode %v %v, want 0600", fi.Mode(), err)
	}
	created, ino, err := ParseID(id)
	if err != nil || ino != inodeOf(fi) || time.Since(created) > time.Minute {
		t.Errorf("ParseID(%s) = %v %d %v; inode %d", id, created, ino, err, inodeOf(fi))
	}
}

// Content larger than the write buffer is streamed, and a header field
// in the file matches what was written.
func TestLargeContent(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	content := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 20000)
	id := commit(t, q, content, testEnvelope(1))
	m, err := q.Read(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := readAll(t, m.Content()); got != content {
		t.Errorf("content differs: %d bytes, want %d", len(got), len(content))
	}
	b, _ := os.ReadFile(filepath.Join(q.Dir(), "incoming", id))
	if n := binary.BigEndian.Uint64(b[8:16]); n != uint64(len(content)) {
		t.Errorf("header says %d bytes", n)
	}
}

func TestClosed(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	ctx := context.Background()
	f, _ := q.Create(ctx, time.Time{})
	q.Close()
	if err := f.Commit(ctx, testEnvelope(1)); err == nil {
		t.Error("Commit after Close succeeded")
	}
	if _, err := q.Create(ctx, time.Time{}); err == nil {
		t.Error("Create after Close succeeded")
	}
}

// The queue is a cleanup.Store: cleanup's pipeline commits into it.
func TestCleanupStore(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	c, err := cleanup.New(cleanup.Config{Hostname: "mx.example.com", Logger: quiet}, q)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := c.Open(ctx, &cleanup.Input{Sender: "a@example.com",
		Recipients: []cleanup.Recipient{{Addr: "b@example.net", Notify: []string{"NEVER"}}}})
	if err != nil {
		t.Fatal(err)
	}
	m.Write([]byte("Subject: x\r\nFrom: a@example.com\r\n\r\nhello\r\n"))
	if err := m.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	msg, err := q.Read(m.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer msg.Close()
	if msg.Envelope.Sender != "a@example.com" || len(msg.Envelope.Recipients) != 1 ||
		!slices.Equal(msg.Envelope.Recipients[0].Notify, []string{"NEVER"}) {
		t.Errorf("envelope %+v", msg.Envelope)
	}
	if !strings.HasSuffix(readAll(t, msg.Content()), "\r\n\r\nhello\r\n") {
		t.Errorf("content %q", readAll(t, msg.Content()))
	}
}
