package bounce

// A small SMTP sink on loopback for the differential tests: Postfix relays
// every message to it; it answers RCPT by the local part (bad* 550,
// slow* 450, anything else 250) and keeps every message it accepts.

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type sinkMessage struct {
	From string
	To   []string
	Data string // CRLF lines, dot-unstuffed
	// Rejected: the sink read the message but refused it at the end of
	// DATA (a rejectdata* recipient), so its sender gets a notice.
	Rejected bool
}

// dataReject is the sink's reply to a message for rejectdata*.
const dataReject = "550 5.7.1 Message content rejected"

type sink struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []sinkMessage
}

func startSink(t testing.TB) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *sink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *sink) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	w := func(line string) { c.Write([]byte(line + "\r\n")) }
	w("220 sink.test ESMTP")
	var cur sinkMessage
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(verb, "EHLO"):
			w("250-sink.test")
			w("250-PIPELINING")
			w("250-8BITMIME")
			w("250 SMTPUTF8")
		case strings.HasPrefix(verb, "HELO"):
			w("250 sink.test")
		case strings.HasPrefix(verb, "MAIL FROM:"):
			cur = sinkMessage{From: addrOf(line[10:])}
			w("250 2.1.0 Ok")
		case strings.HasPrefix(verb, "RCPT TO:"):
			a := addrOf(line[8:])
			code, text := sinkReply(a)
			if code == 250 {
				cur.To = append(cur.To, a)
			}
			w(strconv.Itoa(code) + " " + text)
		case verb == "DATA":
			if len(cur.To) == 0 {
				w("554 5.5.1 Error: no valid recipients")
				continue
			}
			w("354 End data with <CR><LF>.<CR><LF>")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
				l = strings.TrimPrefix(l, ".")
				b.WriteString(l)
			}
			cur.Data = b.String()
			for _, a := range cur.To {
				if strings.HasPrefix(a, "rejectdata") {
					cur.Rejected = true
				}
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, cur)
			s.mu.Unlock()
			if cur.Rejected {
				w(dataReject)
			} else {
				w("250 2.0.0 Ok: queued as SINK1")
			}
			cur = sinkMessage{}
		case verb == "RSET":
			cur = sinkMessage{}
			w("250 2.0.0 Ok")
		case verb == "QUIT":
			w("221 2.0.0 Bye")
			return
		default:
			w("250 2.0.0 Ok")
		}
	}
}

// sinkReply is what the sink answers to RCPT TO:<addr>, and whether it
// accepts it.
func sinkReply(addr string) (code int, text string) {
	local := strings.ToLower(addr)
	switch {
	case strings.HasPrefix(local, "badwrap"):
		return 550, "5.1.1 <" + addr + ">: " + filler(local)
	case strings.HasPrefix(local, "bad"):
		return 550, "5.1.1 <" + addr + ">: Recipient address rejected: User unknown"
	case strings.HasPrefix(local, "slow"):
		return 450, "4.2.0 <" + addr + ">: Recipient address rejected: Try again later"
	}
	return 250, "2.1.5 Ok"
}

// filler is a reply text of words of varied lengths, as long as the
// number in the local part ("badwrap57@..." gives 57 characters), so the
// tests fold text at every possible position.
func filler(local string) string {
	n := 0
	for _, c := range strings.TrimPrefix(local, "badwrap") {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		w := (i*7)%13 + 1
		if i%5 == 4 {
			w = 30 + i%17 // a few long words
		}
		for j := 0; j < w && b.Len() < n; j++ {
			b.WriteByte(byte('a' + (i+j)%26))
		}
	}
	return b.String()
}

// addrOf returns the address inside <...> of a MAIL FROM/RCPT TO argument.
func addrOf(arg string) string {
	arg = strings.TrimSpace(arg)
	if i := strings.IndexByte(arg, '<'); i >= 0 {
		if j := strings.IndexByte(arg[i:], '>'); j >= 0 {
			return arg[i+1 : i+j]
		}
	}
	f := strings.Fields(arg)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// wait returns the first message for which match is true, waiting up to
// timeout; ok is false when none arrived.
func (s *sink) wait(timeout time.Duration, match func(sinkMessage) bool) (sinkMessage, bool) {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		for _, m := range s.msgs {
			if match(m) {
				s.mu.Unlock()
				return m, true
			}
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			return sinkMessage{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// all returns every message for which match is true.
func (s *sink) all(match func(sinkMessage) bool) []sinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sinkMessage
	for _, m := range s.msgs {
		if match(m) {
			out = append(out, m)
		}
	}
	return out
}
