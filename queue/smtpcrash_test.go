package queue_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/smtpserver"
	"github.com/postkit-mail/postkit/smtpserver/smtptest"
)

// The child mode of TestSMTPCrash: the queue directory, the delivery log
// and the round number (written into each delivery line).
const (
	smtpCrashDirEnv   = "POSTKIT_SMTPCRASH_DIR"
	smtpCrashLogEnv   = "POSTKIT_SMTPCRASH_LOG"
	smtpCrashRoundEnv = "POSTKIT_SMTPCRASH_ROUND"
)

// smtpCrashChild is the server process: a queue, cleanup over it, an SMTP
// server on a loopback port (printed as "PORT n") and a scheduler whose
// Deliverer appends "round queueID recipient message-id" to the delivery
// log, fsynced before it reports success. It runs until it is killed.
func smtpCrashChild(dir, logPath, round string) {
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "smtpcrash child: %s: %v\n", what, err)
		os.Exit(3)
	}
	quiet := slog.New(slog.DiscardHandler)
	q, err := queue.Open(dir, queue.Options{Logger: quiet})
	if err != nil {
		fail("open queue", err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fail("open delivery log", err)
	}
	var logMu sync.Mutex
	deliver := queue.DelivererFunc(func(_ context.Context, d *queue.Delivery) []queue.Result {
		res := make([]queue.Result, len(d.Recipients))
		msgID, err := messageID(d)
		if err != nil {
			fail("read "+d.QueueID, err)
		}
		var b strings.Builder
		for i, r := range d.Recipients {
			fmt.Fprintf(&b, "%s %s %s %s\n", round, d.QueueID, r.Addr, msgID)
			res[i] = queue.Result{Outcome: queue.Delivered, DSN: "2.0.0", Relay: "log"}
		}
		// One write per delivery and an fsync before success: what the
		// log holds is what a real delivery agent would have handed on.
		logMu.Lock()
		defer logMu.Unlock()
		if _, err := logf.WriteString(b.String()); err != nil {
			fail("write delivery log", err)
		}
		if err := logf.Sync(); err != nil {
			fail("sync delivery log", err)
		}
		return res
	})
	s, err := queue.NewScheduler(q, queue.SchedulerConfig{Deliverer: deliver, Logger: quiet,
		Poll: 20 * time.Millisecond, QueueRunDelay: 100 * time.Millisecond,
		MinimalBackoff: 100 * time.Millisecond, MaximalBackoff: 200 * time.Millisecond})
	if err != nil {
		fail("scheduler", err)
	}
	s.Start()
	cl, err := cleanup.New(cleanup.Config{Hostname: "mx.example.com", Logger: quiet}, q)
	if err != nil {
		fail("cleanup", err)
	}
	srv, err := smtpserver.New(smtpserver.Config{Hostname: "mx.example.com", Handoff: cl.Handoff(),
		Logger: quiet, ErrorSleepTime: -1})
	if err != nil {
		fail("smtp server", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen", err)
	}
	fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port)
	// The parent kills this process; should the parent die first, stop
	// on our own rather than linger.
	time.AfterFunc(time.Minute, func() { os.Exit(4) })
	if err := srv.Serve(ln); err != nil {
		fail("serve", err)
	}
	select {}
}

// messageID reads the Message-Id header of the queued content.
func messageID(d *queue.Delivery) (string, error) {
	rc, err := d.Open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h, err := textproto.NewReader(bufio.NewReader(rc)).ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the header: %w", err)
	}
	if id := h.Get("Message-Id"); id != "" {
		return id, nil
	}
	return "", errors.New("no Message-Id")
}

// smtpCrashServer is one run of the child process.
type smtpCrashServer struct {
	cmd    *exec.Cmd
	addr   string
	stderr *strings.Builder
}

func startSMTPCrashChild(t *testing.T, dir, logPath string, round int) *smtpCrashServer {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSMTPCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), smtpCrashDirEnv+"="+dir, smtpCrashLogEnv+"="+logPath,
		smtpCrashRoundEnv+"="+strconv.Itoa(round))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() }) // if the test fails before kill
	line, err := bufio.NewReader(out).ReadString('\n')
	port, ok := strings.CutPrefix(strings.TrimSpace(line), "PORT ")
	if err != nil || !ok {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("round %d: the child did not start: %q %v; stderr: %s", round, line, err, stderr.String())
	}
	return &smtpCrashServer{cmd: cmd, addr: "127.0.0.1:" + port, stderr: &stderr}
}

func (s *smtpCrashServer) kill(t *testing.T, round int) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGKILL)
	err := s.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("round %d: the child ended on its own (%v): %s", round, err, s.stderr.String())
	}
}

// smtpCrashClient sends messages over one connection after another until
// stop is closed, and returns the Message-Ids that got 250 at end of DATA.
func smtpCrashClient(t *testing.T, addr, prefix string, stop <-chan struct{}) []string {
	var acked []string
	n := 0
	for {
		select {
		case <-stop:
			return acked
		default:
		}
		nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return acked // the server is gone
		}
		c := smtptest.NewConn(t, nc)
		c.Timeout = 5 * time.Second
		if c.Banner().Code != 220 || c.Cmd("EHLO client.example").Code != 250 {
			c.Close()
			continue
		}
		for {
			select {
			case <-stop:
				c.Close()
				return acked
			default:
			}
			n++
			id := fmt.Sprintf("<%s.%d@client.example>", prefix, n)
			if c.Cmd("MAIL FROM:<sender@client.example>").Code != 250 ||
				c.Cmd("RCPT TO:<rcpt@example.net>").Code != 250 ||
				c.Cmd("DATA").Code != 354 {
				break
			}
			body := "From: sender@client.example\r\nTo: rcpt@example.net\r\nMessage-Id: " + id +
				"\r\nSubject: crash test " + id + "\r\n\r\n" + strings.Repeat("line of text\r\n", n%40)
			r := c.Data(body)
			if r.Closed {
				break
			}
			if r.Code == 250 {
				acked = append(acked, id)
			}
		}
		c.Close()
	}
}

// queuedFiles counts the committed messages waiting in the queue
// directories (names starting with '.' are not committed).
func queuedFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	for _, s := range []queue.State{queue.Incoming, queue.Active, queue.Deferred, queue.Hold} {
		ents, err := os.ReadDir(filepath.Join(dir, string(s)))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") {
				n++
			}
		}
	}
	return n
}

// The crash-safety test of the whole receiving path: a real server
// process (SMTP server, cleanup, queue, scheduler) under load from
// concurrent SMTP clients is killed with SIGKILL at random moments, many
// times; then one last run drains the queue. Every message that got a 250
// must have been delivered at least once (DESIGN.md, Durability); a
// message may be delivered twice only across a kill (its delivery was done
// but not yet recorded), never twice within one process; nothing is
// corrupt and the queue ends empty.
func TestSMTPCrash(t *testing.T) {
	if dir := os.Getenv(smtpCrashDirEnv); dir != "" {
		smtpCrashChild(dir, os.Getenv(smtpCrashLogEnv), os.Getenv(smtpCrashRoundEnv))
		return
	}
	rounds, clients := 15, 6
	if testing.Short() {
		rounds = 5
	}
	dir := filepath.Join(t.TempDir(), "queue")
	logPath := filepath.Join(t.TempDir(), "delivered.log")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	acked := map[string]int{} // Message-Id -> round of its 250
	for round := range rounds {
		srv := startSMTPCrashChild(t, dir, logPath, round)
		stop := make(chan struct{})
		results := make(chan []string, clients)
		for c := range clients {
			go func() { results <- smtpCrashClient(t, srv.addr, fmt.Sprintf("r%dc%d", round, c), stop) }()
		}
		time.Sleep(time.Duration(20+rng.IntN(281)) * time.Millisecond)
		srv.kill(t, round)
		close(stop)
		for range clients {
			for _, id := range <-results {
				acked[id] = round
			}
		}
	}

	// The last run drains the queue.
	srv := startSMTPCrashChild(t, dir, logPath, rounds)
	deadline := time.Now().Add(15 * time.Second)
	for queuedFiles(t, dir) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	srv.kill(t, rounds)

	q, err := queue.Open(dir, queue.Options{Logger: slog.New(slog.DiscardHandler), VerifyAll: true})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if rec := q.Recovery(); len(rec.Corrupt) > 0 {
		t.Errorf("corrupt queue files: %v", rec.Corrupt)
	}
	for _, s := range queue.States {
		ents, err := q.List(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) > 0 {
			t.Errorf("%d messages left in %s after the drain, e.g. %s", len(ents), s, ents[0].ID)
		}
	}

	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	deliveries := map[string][]int{} // Message-Id -> rounds that delivered it
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 {
			continue // empty last line
		}
		r, err := strconv.Atoi(f[0])
		if err != nil || f[2] != "rcpt@example.net" {
			t.Errorf("bad delivery log line %q", l)
			continue
		}
		deliveries[f[3]] = append(deliveries[f[3]], r)
	}
	lost, dups := 0, 0
	for id := range acked {
		if len(deliveries[id]) == 0 {
			lost++
			if lost <= 10 {
				t.Errorf("%s got 250 but was never delivered", id)
			}
		}
	}
	for id, rs := range deliveries {
		if len(rs) < 2 {
			continue
		}
		dups++
		// A second delivery is allowed only when a kill cut the run
		// that delivered it first (the status was not yet recorded).
		for i := 1; i < len(rs); i++ {
			if rs[i] <= rs[i-1] {
				t.Errorf("%s delivered twice by one process (rounds %v)", id, rs)
				break
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged messages lost", lost, len(acked))
	}
	if len(acked) == 0 {
		t.Error("no message was acknowledged: the load did not reach the server")
	}
	t.Logf("%d rounds: %d messages acknowledged, %d distinct delivered (%d log lines), %d delivered more than once",
		rounds, len(acked), len(deliveries), strings.Count(string(data), "\n"), dups)
}
