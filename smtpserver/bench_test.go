package smtpserver

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// discardHandoff accepts and forgets every message.
type discardHandoff struct{}

type discardMsg struct{}

func (discardHandoff) Open(context.Context, *Envelope) (Message, error) { return discardMsg{}, nil }
func (discardMsg) ID() string                                           { return "DISCARD" }
func (discardMsg) Write(p []byte) (int, error)                          { return len(p), nil }
func (discardMsg) Commit(context.Context, *Envelope) error              { return nil }
func (discardMsg) Abort() error                                         { return nil }

var _ io.Writer = discardMsg{}

// BenchmarkSMTPSource sends 2000 messages in 20 sessions with Postfix's
// smtp-source into this server (hand-off discards) and into Postfix's
// smtp-sink, in the same run, and reports messages per second of both
// and their ratio.
func BenchmarkSMTPSource(b *testing.B) {
	source := oracle.Require(b, "smtp-source")
	sink := oracle.Require(b, "smtp-sink")
	const msgs, sessions = 2000, 20
	run := func(addr string) float64 {
		start := time.Now()
		cmd := exec.Command(source, "-s", strconv.Itoa(sessions), "-m", strconv.Itoa(msgs), "-l", "1024", "-t", "b@example.com", addr)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("smtp-source: %v\n%s", err, out)
		}
		return float64(msgs) / time.Since(start).Seconds()
	}
	srv, err := New(Config{Hostname: "mx.test", Handoff: discardHandoff{}})
	if err != nil {
		b.Fatal(err)
	}
	ln := listen(b)
	go srv.Serve(ln)
	defer srv.Close()

	sl := listen(b)
	sinkAddr := sl.Addr().String()
	sl.Close()
	// smtp-sink wants a user to drop to when started as root.
	args := []string{sinkAddr, "256"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	sk := exec.Command(sink, args...)
	if err := sk.Start(); err != nil {
		b.Fatal(err)
	}
	defer sk.Process.Kill()
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", sinkAddr); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.ResetTimer()
	var ours, theirs float64
	for i := 0; i < b.N; i++ {
		ours += run(ln.Addr().String())
		theirs += run(sinkAddr)
	}
	b.ReportMetric(ours/float64(b.N), "postkit-msgs/s")
	b.ReportMetric(theirs/float64(b.N), "smtp-sink-msgs/s")
	b.ReportMetric(ours/theirs, "ratio")
}

// BenchmarkIdleConnections opens 1000 sessions that sit after the banner
// and reports the server's memory per connection (heap and goroutine
// stacks; the client side's conns are in the same process, so this
// overstates by the client's socket structures).
func BenchmarkIdleConnections(b *testing.B) {
	const n = 1000
	for i := 0; i < b.N; i++ {
		srv, err := New(Config{Hostname: "mx.test", Handoff: discardHandoff{}})
		if err != nil {
			b.Fatal(err)
		}
		ln := listen(b)
		go srv.Serve(ln)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		conns := make([]net.Conn, 0, n)
		buf := make([]byte, 512)
		for j := 0; j < n; j++ {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Read(buf); err != nil { // the banner
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		// Live heap objects (HeapAlloc after a GC) and goroutine
		// stacks; HeapInuse would count partly filled spans and vary
		// from run to run by a third.
		used := (after.HeapAlloc + after.StackInuse) - (before.HeapAlloc + before.StackInuse)
		b.ReportMetric(float64(used)/n, "bytes/conn")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stack-bytes/conn")
		for _, c := range conns {
			c.Close()
		}
		srv.Close()
		// Wait for the sessions to end, so that the next round starts
		// from the same heap.
		srv.Shutdown(context.Background())
	}
}
