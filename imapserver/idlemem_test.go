package imapserver

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/mailbox"
)

// The 5,000-connection memory benchmark runs the server in a child
// process (this test binary, re-run with idleChildEnv set to the
// directory holding passwd and the homes), so that the process's
// resident memory is the server's alone: the clients live in the parent.
const idleChildEnv = "POSTKIT_IMAP_IDLE_CHILD"

// idleChildHibernate is the child server's Options.IdleHibernate.
const idleChildHibernate = 3 * time.Second

// TestIdleChild is the server side of BenchmarkIdleMemoryVsDovecot: it does
// nothing unless started by the benchmark. It prints the listening
// address, then for each line "measure" on stdin one line of figures,
// and exits when stdin closes.
func TestIdleChild(t *testing.T) {
	dir := os.Getenv(idleChildEnv)
	if dir == "" {
		t.Skip("run by BenchmarkIdleMemoryVsDovecot only")
	}
	if os.Getenv("POSTKIT_IMAP_IDLE_PROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	db, err := auth.OpenPasswdFile(filepath.Join(dir, "passwd"), auth.PasswdFileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hub := mailbox.NewHub(mailbox.HubOptions{})
	defer hub.Close()
	s, err := New(Options{
		Auth:               &auth.Authenticator{PassDB: db, UserDB: db, FailureDelay: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Hub:                hub,
		AllowPlaintextAuth: true,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
		Hostname:           "test.example",
		MaxConnections:     20000,
		MaxIPConnections:   20000,
		IdleHibernate:      idleChildHibernate,

		DisableSpecialFolders: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Close()
	fmt.Printf("addr %s\n", ln.Addr())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch l := sc.Text(); {
		case l == "measure":
			fmt.Println(memFigures())
		case strings.HasPrefix(l, "profile "):
			runtime.GC()
			f, err := os.Create(strings.TrimPrefix(l, "profile "))
			if err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
			fmt.Println("done")
		}
	}
}

// memFigures: "heap=B stacks=B total=B rss=B" after a GC. heap is the
// bytes of live heap objects plus the heap's in-use but free slots
// (runtime/metrics /memory/classes/heap/objects + unused), stacks the
// goroutine stacks, total all memory the Go runtime has mapped, rss the
// process's VmRSS.
func memFigures() string {
	runtime.GC()
	runtime.GC()
	names := []string{
		"/memory/classes/heap/objects:bytes",
		"/memory/classes/heap/unused:bytes",
		"/memory/classes/heap/stacks:bytes",
		"/memory/classes/total:bytes",
	}
	samples := make([]metrics.Sample, len(names))
	for i, n := range names {
		samples[i].Name = n
	}
	metrics.Read(samples)
	v := func(i int) uint64 { return samples[i].Value.Uint64() }
	return fmt.Sprintf("heap=%d stacks=%d total=%d rss=%d goroutines=%d",
		v(0)+v(1), v(2), v(3), processRSS(os.Getpid()), runtime.NumGoroutine())
}

// linkMaildir makes a Maildir at dst with hard links to the messages of
// src.
func linkMaildir(b testing.TB, src, dst string) {
	ents, err := os.ReadDir(filepath.Join(src, "cur"))
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dst, d), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	for _, e := range ents {
		if err := os.Link(filepath.Join(src, "cur", e.Name()), filepath.Join(dst, "cur", e.Name())); err != nil {
			b.Fatal(err)
		}
	}
}

// idleUsers makes n passwd-file users u0..u(n-1), password "secret", each
// with a Maildir of msgs messages (hard links to one set of files).
func idleUsers(b testing.TB, dir string, n, msgs int) {
	tmpl := filepath.Join(dir, "template")
	benchMaildirT(b, tmpl, msgs)
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534
	}
	var pw strings.Builder
	for u := 0; u < n; u++ {
		home := filepath.Join(dir, "home", fmt.Sprintf("u%d", u))
		linkMaildir(b, tmpl, filepath.Join(home, "Maildir"))
		fmt.Fprintf(&pw, "u%d:{PLAIN}secret:%d:%d::%s::\n", u, uid, gid, home)
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(pw.String()), 0o600); err != nil {
		b.Fatal(err)
	}
}

type memChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	addr  string
}

func startMemChild(b testing.TB, dir string) *memChild {
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), idleChildEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &memChild{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	l, err := c.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "addr ") {
		b.Fatalf("child: %q %v", l, err)
	}
	c.addr = strings.TrimSpace(strings.TrimPrefix(l, "addr "))
	return c
}

func (c *memChild) measure(b testing.TB) map[string]int64 {
	fmt.Fprintln(c.stdin, "measure")
	l, err := c.out.ReadString('\n')
	if err != nil {
		b.Fatalf("child: %v", err)
	}
	out := map[string]int64{}
	for _, f := range strings.Fields(l) {
		k, v, _ := strings.Cut(f, "=")
		out[k], _ = strconv.ParseInt(v, 10, 64)
	}
	return out
}

// idleConn logs in as user, selects INBOX and starts IDLE.
func idleConn(b testing.TB, addr, user string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	fmt.Fprintf(c, "a LOGIN %s secret\r\nb SELECT INBOX\r\nc IDLE\r\n", user)
	br := bufio.NewReaderSize(c, 512)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			b.Fatalf("%s: %v", user, err)
		}
		if strings.HasPrefix(l, "a ") && !strings.HasPrefix(l, "a OK") ||
			strings.HasPrefix(l, "b ") && !strings.HasPrefix(l, "b OK") {
			b.Fatalf("%s: %q", user, l)
		}
		if strings.HasPrefix(l, "+ ") {
			break
		}
	}
	c.SetDeadline(time.Time{})
	return c
}
