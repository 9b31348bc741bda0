package restrictions

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A policy server for tests: a real listener on 127.0.0.1 or a UNIX
// socket that records every request and answers what its script says.

// policyAttr is one name=value line of a request.
type policyAttr struct{ Name, Value string }

// policyReq is one request as the server received it.
type policyReq struct {
	Conn  int // the connection it came on, numbered from 1 in accept order
	Attrs []policyAttr
}

// get returns the value of the attribute name.
func (r policyReq) get(name string) string {
	for _, a := range r.Attrs {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

// Special answers.
const (
	policyHang  = "\x00hang"  // read the request and never answer
	policyClose = "\x00close" // (at the end of an answer) close the connection after it
)

// policyAnswer returns the bytes to send for a request, or policyHang or
// policyClose.
type policyAnswer func(req policyReq) string

// reply formats "action=ACTION\n\n".
func reply(action string) policyAnswer {
	return func(policyReq) string { return "action=" + action + "\n\n" }
}

type policyServer struct {
	t      testing.TB
	ln     net.Listener
	spec   string // the check_policy_service argument that reaches it
	answer policyAnswer

	// closeAfterReply closes each connection right after its first
	// reply, like a server that does not keep connections open.
	closeAfterReply bool
	// forget: do not keep the requests (benchmarks).
	forget bool

	mu      sync.Mutex
	reqs    []policyReq
	accepts int
	closed  int // connections that ended (either side)
	conns   map[net.Conn]bool
	changed chan struct{} // closed and replaced on every event
	wg      sync.WaitGroup
}

// startPolicyServer starts a server on network "tcp" (127.0.0.1) or
// "unix" that answers with answer.
func startPolicyServer(t testing.TB, network string, answer policyAnswer) *policyServer {
	t.Helper()
	s := &policyServer{t: t, answer: answer, conns: map[net.Conn]bool{}, changed: make(chan struct{})}
	var err error
	switch network {
	case "tcp":
		s.ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			s.spec = "inet:" + s.ln.Addr().String()
		}
	case "unix":
		// Not t.TempDir(): socket paths must fit in 108 bytes.
		dir, derr := os.MkdirTemp("", "pkpol")
		if derr != nil {
			t.Fatal(derr)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		path := filepath.Join(dir, "policy.sock")
		s.ln, err = net.Listen("unix", path)
		s.spec = "unix:" + path
	default:
		t.Fatalf("policy server: unknown network %q", network)
	}
	if err != nil {
		t.Fatalf("policy server: %v", err)
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

func (s *policyServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// event wakes up waiters; call with s.mu held.
func (s *policyServer) event() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *policyServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.accepts++
		id := s.accepts
		s.conns[c] = true
		s.event()
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handle(c, id)
	}
}

func (s *policyServer) handle(c net.Conn, id int) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.closed++
		s.event()
		s.mu.Unlock()
	}()
	r := bufio.NewReader(c)
	var attrs []policyAttr
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line != "" {
			name, value, ok := strings.Cut(line, "=")
			if !ok {
				s.t.Errorf("policy server: request line without '=': %q", line)
			}
			attrs = append(attrs, policyAttr{name, value})
			continue
		}
		req := policyReq{Conn: id, Attrs: attrs}
		attrs = nil
		s.mu.Lock()
		if !s.forget {
			s.reqs = append(s.reqs, req)
		}
		s.event()
		answer := s.answer
		s.mu.Unlock()
		out := answer(req)
		if out == policyHang {
			continue
		}
		out, closeNow := strings.CutSuffix(out, policyClose)
		if _, err := c.Write([]byte(out)); err != nil || closeNow {
			return
		}
		if s.closeAfterReply {
			return
		}
	}
}

// setAnswer changes the script.
func (s *policyServer) setAnswer(a policyAnswer) {
	s.mu.Lock()
	s.answer = a
	s.mu.Unlock()
}

// requests returns the requests received so far.
func (s *policyServer) requests() []policyReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]policyReq(nil), s.reqs...)
}

// counts returns the number of connections accepted and ended.
func (s *policyServer) counts() (accepts, closed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepts, s.closed
}

// waitFor waits until cond (called with s.mu held) holds, failing the
// test after 10 seconds. It is for events the client causes
// asynchronously (closing an idle connection), not for timing.
func (s *policyServer) waitFor(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok := cond()
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			s.t.Fatalf("policy server: still waiting for %s", what)
		}
	}
}

// deadEndpoint returns "inet:127.0.0.1:PORT" for a port nothing listens on.
func deadEndpoint(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "inet:" + addr
}

// parsePolicyRequest splits a request written by policyRequest into its
// attributes, checking the framing.
func parsePolicyRequest(t testing.TB, req []byte) []policyAttr {
	t.Helper()
	s := string(req)
	if !strings.HasSuffix(s, "\n\n") {
		t.Fatalf("request does not end with an empty line: %q", s)
	}
	var out []policyAttr
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n\n"), "\n") {
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("request line without '=': %q", line)
		}
		out = append(out, policyAttr{name, value})
	}
	return out
}
