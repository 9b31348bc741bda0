package local

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/queue"
)

// testMessage is a small message as cleanup queues it (CRLF lines).
const testMessage = "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: test\r\nMessage-Id: <1@example.org>\r\n\r\nHello.\r\nFrom here on, quoting.\r\n>From stays.\r\n"

// harness is an agent on a scratch directory: a passwd-file user database
// with users whose homes are under dir/home, a spool under dir/spool, an
// aliases file, and a real cleanup store for forwarded mail.
type harness struct {
	t     testing.TB
	dir   string
	agent *Agent
	store *cleanup.DirStore
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testUsers are created in every harness (see testIDs).
var testUsers = []string{"bob", "carol", "admin", "dave"}

// testIDs is the uid and gid of the test users: the process's own when
// the test is not root (the agent then delivers as itself), and nobody's
// when it is, so that deliveries really switch identity and chown.
func testIDs() (int, int) {
	if os.Geteuid() == 0 {
		return 65534, 65534
	}
	return os.Getuid(), os.Getgid()
}

// newHarness writes aliases (aliases(5) text) and builds an agent from
// mainCF, which is added to the harness's settings; "{DIR}" in either is
// replaced with the scratch directory.
func newHarness(t testing.TB, mainCF, aliases string) *harness {
	t.Helper()
	dir := t.TempDir()
	// Commands run as default_privs (nobody) when the test is root: let
	// them reach the scratch directory.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	var pw strings.Builder
	uid, gid := testIDs()
	for _, u := range testUsers {
		home := filepath.Join(dir, "home", u)
		if err := os.MkdirAll(home, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(home, uid, gid); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&pw, "%s:{PLAIN}x:%d:%d::%s::\n", u, uid, gid, home)
	}
	for _, d := range []string{"spool", "files"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, d), 0o777)
	}
	writeFile(t, filepath.Join(dir, "passwd"), pw.String(), 0o644)
	writeFile(t, filepath.Join(dir, "aliases"), strings.ReplaceAll(aliases, "{DIR}", dir), 0o644)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	users, err := auth.OpenPasswdFile(filepath.Join(dir, "passwd"), auth.PasswdFileOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	main := "myhostname = mx.example.net\nmydomain = example.net\nmyorigin = example.net\n" +
		"mydestination = example.net, localhost\n" +
		"alias_maps = hash:{DIR}/aliases\n" +
		"mail_spool_directory = {DIR}/spool\n" +
		"default_privs = nobody\n" + mainCF
	cfg, err := config.Parse("main.cf", strings.NewReader(strings.ReplaceAll(main, "{DIR}", dir)))
	if err != nil {
		t.Fatal(err)
	}
	store, err := cleanup.OpenDirStore(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cleanup.New(cleanup.Config{Hostname: "mx.example.net", Location: time.UTC, Logger: log}, store)
	if err != nil {
		t.Fatal(err)
	}
	a, err := FromConfig(context.Background(), cfg, Options{
		Users: users, Resubmit: mda.NewCleanupResubmitter(cl), Logger: log, Hostname: "mx.example.net",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return &harness{t: t, dir: dir, agent: a, store: store, logs: logs}
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// delivery builds a queue.Delivery for content from sender to rcpts;
// each recipient's original address is itself.
func delivery(content, sender string, rcpts ...string) *queue.Delivery {
	env := &cleanup.Envelope{QueueID: "4ABCDEF", Sender: sender, Arrival: time.Now(), Size: int64(len(content))}
	d := &queue.Delivery{QueueID: env.QueueID, Envelope: env, Transport: "local", Nexthop: "mx.example.net", Size: int64(len(content)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(content)), nil }}
	for i, r := range rcpts {
		cr := cleanup.Recipient{Addr: r, Original: r}
		env.Recipients = append(env.Recipients, cr)
		d.Recipients = append(d.Recipients, queue.Recipient{Index: i, Addr: r, Recipient: cr})
	}
	return d
}

func (h *harness) deliver(content, sender string, rcpts ...string) []queue.Result {
	h.t.Helper()
	res := h.agent.Deliver(context.Background(), delivery(content, sender, rcpts...))
	if len(res) != len(rcpts) {
		h.t.Fatalf("%d results for %d recipients", len(res), len(rcpts))
	}
	return res
}

// want checks one result.
func want(t *testing.T, r queue.Result, o queue.Outcome, dsn, reason string) {
	t.Helper()
	if r.Outcome != o || r.DSN != dsn || r.Reason != reason || r.Relay != "local" {
		t.Errorf("result = %v %s relay=%s (%s), want %v %s relay=local (%s)", r.Outcome, r.DSN, r.Relay, r.Reason, o, dsn, reason)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// maildirFiles returns the contents of the files in dir/new.
func maildirFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, read(t, filepath.Join(dir, "new", e.Name())))
	}
	return out
}

// queued returns the messages the harness's cleanup store holds
// (forwarded copies).
func (h *harness) queued() []queuedMsg {
	h.t.Helper()
	ids, err := h.store.List()
	if err != nil {
		h.t.Fatal(err)
	}
	var out []queuedMsg
	for _, id := range ids {
		env, data, err := h.store.Read(id)
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, queuedMsg{id: id, env: env, data: string(data)})
	}
	return out
}

type queuedMsg struct {
	id   string
	env  *cleanup.Envelope
	data string
}

func (q queuedMsg) rcpts() string {
	var s []string
	for _, r := range q.env.Recipients {
		s = append(s, r.Addr)
	}
	return strings.Join(s, ",")
}

func fromMain(t *testing.T, main string) (*Agent, error) {
	cfg, err := config.Parse("main.cf", strings.NewReader("alias_maps =\n"+main))
	if err != nil {
		t.Fatal(err)
	}
	return FromConfig(context.Background(), cfg, Options{})
}

func newBenchHarness(b *testing.B, mainCF string) *harness { return newHarness(b, mainCF, "") }
