package virtual_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/mda/virtual"
	"github.com/postkit-mail/postkit/queue"
)

const message = "Received: from client.test by mx.test\r\nFrom: Alice <alice@x.test>\r\nSubject: hi\r\n\r\nFrom the start of a line\r\n>From quoted already\r\nbye\r\n"

func request(sender, content string, rcpts ...queue.Recipient) *queue.Delivery {
	for i := range rcpts {
		rcpts[i].Index = i
	}
	return &queue.Delivery{QueueID: "4Yxk3B5xWJzBq2", Transport: "virtual", Nexthop: "v.test",
		Envelope: &cleanup.Envelope{Sender: sender}, Recipients: rcpts, Size: int64(len(content)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(content)), nil }}
}

func rcpt(addr, orig string) queue.Recipient {
	return queue.Recipient{Addr: addr, Recipient: cleanup.Recipient{Addr: addr, Original: orig}}
}

// setup writes main.cf and a mailbox table into a directory and returns
// the agent and the mailbox base.
func setup(t testing.TB, extra string) (*virtual.Agent, string) {
	t.Helper()
	dir := t.TempDir()
	base := filepath.Join(dir, "vmail")
	// Mailbox files need their directory (virtual(8) creates only
	// Maildirs); Maildirs are created on demand.
	if err := os.MkdirAll(filepath.Join(base, "v.test"), 0o755); err != nil {
		t.Fatal(err)
	}
	ownBase(t, base, 5000, filepath.Join(base, "v.test"))
	table := "bob@v.test v.test/bob/Maildir/\ncarol@v.test v.test/carol.mbox\n@w.test w.test/catchall/\n" +
		"dave@v.test v.test/dave/\n"
	if err := os.WriteFile(filepath.Join(dir, "vmailbox"), []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	main := "virtual_mailbox_base = " + base + "\n" +
		"virtual_mailbox_maps = texthash:" + filepath.Join(dir, "vmailbox") + "\n" +
		"virtual_uid_maps = static:5000\nvirtual_gid_maps = static:5000\nrecipient_delimiter = +\n" + extra
	cfg, err := config.Parse("main.cf", strings.NewReader(main))
	if err != nil {
		t.Fatal(err)
	}
	a, err := virtual.FromConfig(context.Background(), cfg, virtual.Options{Hostname: "host.test",
		Now: func() time.Time { return time.Date(2026, 11, 26, 17, 1, 1, 0, time.Local) }})
	if err != nil {
		t.Fatal(err)
	}
	return a, base
}

func TestMaildirAndMbox(t *testing.T) {
	a, base := setup(t, "")
	res := a.Deliver(context.Background(), request("alice@x.test", message,
		rcpt("Bob+Lists@V.test", "info@v.test"), rcpt("carol@v.test", ""), rcpt("anyone@w.test", "anyone@w.test")))
	for i, want := range []string{"delivered to maildir", "delivered to mailbox", "delivered to maildir"} {
		if r := res[i]; r.Outcome != queue.Delivered || r.DSN != "2.0.0" || r.Reason != want || r.Relay != "virtual" {
			t.Errorf("recipient %d: %+v", i, r)
		}
	}
	files, _ := filepath.Glob(filepath.Join(base, "v.test/bob/Maildir/new/*"))
	if len(files) != 1 || !strings.HasSuffix(files[0], ".host.test") {
		t.Fatalf("maildir files %v", files)
	}
	got, _ := os.ReadFile(files[0])
	want := "Return-Path: <alice@x.test>\nX-Original-To: info@v.test\nDelivered-To: Bob+Lists@V.test\n" +
		strings.ReplaceAll(message, "\r\n", "\n")
	if string(got) != want {
		t.Errorf("maildir file:\n%s\nwant:\n%s", got, want)
	}
	got, _ = os.ReadFile(filepath.Join(base, "v.test/carol.mbox"))
	want = "From alice@x.test  Thu Nov 26 17:01:01 2026\nReturn-Path: <alice@x.test>\nX-Original-To: carol@v.test\nDelivered-To: carol@v.test\n" +
		"Received: from client.test by mx.test\nFrom: Alice <alice@x.test>\nSubject: hi\n\n>From the start of a line\n>From quoted already\nbye\n\n"
	if string(got) != want {
		t.Errorf("mbox file:\n%q\nwant:\n%q", got, want)
	}
	if files, _ := filepath.Glob(filepath.Join(base, "w.test/catchall/new/*")); len(files) != 1 {
		t.Errorf("catch-all maildir: %v", files)
	}
	if os.Geteuid() == 0 {
		var st os.FileInfo
		if st, _ = os.Stat(filepath.Join(base, "v.test/carol.mbox")); st != nil && ownerUID(st) != 5000 {
			t.Errorf("mbox owner uid %d, want 5000", ownerUID(st))
		}
	}
}

func TestPythonReadsStores(t *testing.T) {
	py := oracle.Require(t, "python3")
	a, base := setup(t, "")
	for i := 0; i < 3; i++ {
		res := a.Deliver(context.Background(), request("", message, rcpt("bob@v.test", ""), rcpt("carol@v.test", "")))
		if res[0].Outcome != queue.Delivered || res[1].Outcome != queue.Delivered {
			t.Fatalf("%+v", res)
		}
	}
	script := `
import mailbox, sys
md = mailbox.Maildir(sys.argv[1], factory=None, create=False)
mb = mailbox.mbox(sys.argv[2], create=False)
for box in (md, mb):
    msgs = list(box)
    assert len(msgs) == 3, len(msgs)
    for m in msgs:
        assert m["Subject"] == "hi", m["Subject"]
        assert m["Return-Path"] == "<>", m["Return-Path"]
        body = m.get_payload()
        assert body.startswith("From the start" if box is md else ">From the start"), repr(body)
        assert body.endswith("bye\n"), repr(body)
print(mb[0].get_from())
`
	out, err := exec.Command(py, "-c", script, filepath.Join(base, "v.test/bob/Maildir"), filepath.Join(base, "v.test/carol.mbox")).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "MAILER-DAEMON  Thu Nov 26 17:01:01 2026" {
		t.Errorf("python's From_ line: %q", got)
	}
}

// TestUnknownUserAndNoLoopCheck: an unknown address bounces with
// Postfix's text; a Delivered-To equal to the recipient does not stop
// delivery (Postfix's virtual(8) has no loop check, see oracle_test.go).
func TestUnknownUserAndNoLoopCheck(t *testing.T) {
	a, _ := setup(t, "")
	looped := "Delivered-To: Bob@V.test\r\n" + message
	res := a.Deliver(context.Background(), request("alice@x.test", looped, rcpt("Nobody@v.test", ""), rcpt("bob@v.test", ""), rcpt("carol@v.test", "")))
	if r := res[0]; r.Outcome != queue.Failed || r.DSN != "5.1.1" || r.Reason != `unknown user: "Nobody@v.test"` {
		t.Errorf("unknown: %+v", r)
	}
	if r := res[1]; r.Outcome != queue.Delivered || r.Reason != "delivered to maildir" {
		t.Errorf("Delivered-To present: %+v", r)
	}
	if res[2].Outcome != queue.Delivered {
		t.Errorf("carol: %+v", res[2])
	}
}

func TestUIDProblemsDefer(t *testing.T) {
	for _, extra := range []string{
		"virtual_uid_maps = static:99\n",
		"virtual_uid_maps = texthash:/nonexistent\n",
		"virtual_gid_maps = static:0\n",
		"virtual_uid_maps = static:50x\n",
		"virtual_uid_maps = inline:{other@v.test=6000}\n",
	} {
		a, base := setupOrSkip(t, extra)
		if a == nil {
			continue
		}
		res := a.Deliver(context.Background(), request("alice@x.test", message, rcpt("bob@v.test", "")))
		if r := res[0]; r.Outcome != queue.Delayed || r.DSN != "4.3.5" || r.Reason != "mail system configuration error" {
			t.Errorf("%s: %+v", extra, r)
		}
		if files, _ := filepath.Glob(filepath.Join(base, "v.test/bob/Maildir/new/*")); len(files) != 0 {
			t.Errorf("%s: delivered anyway", extra)
		}
	}
}

// setupOrSkip is setup for configurations whose tables may fail to
// open: such a configuration must fail at FromConfig instead.
func setupOrSkip(t *testing.T, extra string) (*virtual.Agent, string) {
	if strings.Contains(extra, "/nonexistent") {
		cfg, _ := config.Parse("main.cf", strings.NewReader("virtual_mailbox_base = /x\n"+extra))
		if _, err := virtual.FromConfig(context.Background(), cfg, virtual.Options{}); err == nil {
			t.Errorf("%s: FromConfig opened a missing table", extra)
		}
		return nil, ""
	}
	return setup(t, extra)
}

func TestTableErrorDefers(t *testing.T) {
	base := t.TempDir()
	ownBase(t, base, 5000)
	broken := maps.FuncMap(func(ctx context.Context, key string) (string, bool, error) {
		return "", false, &maps.Error{Map: "pgsql:/etc/x", Key: key, Temporary: true, Err: errors.New("connection refused")}
	})
	a, err := virtual.New(virtual.Config{Base: base, Mailboxes: maps.List{broken}, UIDs: maps.List{maps.StaticMap{"@v.test": "5000"}},
		GIDs: maps.List{maps.StaticMap{"@v.test": "5000"}}, MinimumUID: 100}, virtual.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res := a.Deliver(context.Background(), request("", message, rcpt("bob@v.test", "")))
	if r := res[0]; r.Outcome != queue.Delayed || r.DSN != "4.3.5" {
		t.Errorf("%+v", r)
	}
	if _, err := virtual.New(virtual.Config{Base: "relative"}, virtual.Options{}); err == nil {
		t.Error("relative virtual_mailbox_base accepted")
	}
}

func TestMailboxLimit(t *testing.T) {
	a, base := setup(t, "virtual_mailbox_limit = 300\n")
	res := a.Deliver(context.Background(), request("alice@x.test", message, rcpt("carol@v.test", ""), rcpt("bob@v.test", "")))
	if res[0].Outcome != queue.Delivered {
		t.Fatalf("first mbox delivery: %+v", res[0])
	}
	res = a.Deliver(context.Background(), request("alice@x.test", message, rcpt("carol@v.test", "")))
	if r := res[0]; r.Outcome != queue.Failed || r.DSN != "5.2.2" || !strings.HasPrefix(r.Reason, "delivery failed to mailbox "+base+"/v.test/carol.mbox: ") {
		t.Errorf("over the limit: %+v", r)
	}
	big := message + strings.Repeat("x", 400) + "\r\n"
	res = a.Deliver(context.Background(), request("alice@x.test", big, rcpt("bob@v.test", "")))
	if r := res[0]; r.Outcome != queue.Failed || r.DSN != "5.2.2" || !strings.HasPrefix(r.Reason, "maildir delivery failed: ") {
		t.Errorf("maildir over the limit: %+v", r)
	}
	st, _ := os.Stat(filepath.Join(base, "v.test/carol.mbox"))
	if st == nil || st.Size() > 300 {
		t.Errorf("mbox not truncated back: %v", st)
	}
}

// TestConcurrentDeliveries delivers to one mbox and one Maildir from
// many goroutines at once (the scheduler does); the mbox locks keep the
// messages whole, and Python's mailbox module finds all of them.
func TestConcurrentDeliveries(t *testing.T) {
	py := oracle.Require(t, "python3")
	a, base := setup(t, "")
	const n = 16
	errs := make(chan string, 2*n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range a.Deliver(context.Background(), request("alice@x.test", message, rcpt("carol@v.test", ""), rcpt("bob@v.test", ""))) {
				if r.Outcome != queue.Delivered {
					errs <- r.Reason
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	script := `
import mailbox, sys
for box in (mailbox.Maildir(sys.argv[1], factory=None, create=False), mailbox.mbox(sys.argv[2], create=False)):
    msgs = list(box)
    assert len(msgs) == int(sys.argv[3]), len(msgs)
    for m in msgs:
        assert m["Subject"] == "hi" and m.get_payload().endswith("bye\n"), m.as_string()
`
	out, err := exec.Command(py, "-c", script, filepath.Join(base, "v.test/bob/Maildir"), filepath.Join(base, "v.test/carol.mbox"), "16").CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
}
