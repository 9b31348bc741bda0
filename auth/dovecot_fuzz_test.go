package auth

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDovecotEscape: escaping round-trips, escaped text never holds a
// separator, and unescaping anything is safe.
func FuzzDovecotEscape(f *testing.F) {
	for _, s := range []string{"", "plain", "a\tb", "\x01", "\x011\x01t\x01", "end\x01", "\r\n\x00", "ü\t\x01x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := dovecotEscape(s)
		if strings.ContainsAny(e, "\t\n\r\x00") {
			t.Fatalf("dovecotEscape(%q) = %q holds a separator", s, e)
		}
		if u := dovecotUnescape(e); u != s {
			t.Fatalf("round trip of %q: %q -> %q", s, e, u)
		}
		u := dovecotUnescape(s)
		if len(u) > len(s) {
			t.Fatalf("dovecotUnescape(%q) = %q grew", s, u)
		}
		if utf8.ValidString(s) && !strings.Contains(s, "\x01") && u != s {
			t.Fatalf("dovecotUnescape(%q) = %q changed text without escapes", s, u)
		}
	})
}

// FuzzDovecotServer feeds arbitrary client bytes to a DovecotServer and
// checks that every reply is a well-formed line for a request id the
// client used, and that the server never crashes or hangs.
func FuzzDovecotServer(f *testing.F) {
	hs := "VERSION\t1\t2\nCPID\t1\n"
	f.Add([]byte(hs))
	for _, d := range dovecotDialogues {
		var b strings.Builder
		b.WriteString(hs)
		for _, st := range d.steps {
			for _, l := range st.send {
				b.WriteString(l + "\n")
			}
		}
		f.Add([]byte(b.String()))
	}
	f.Add([]byte(hs + "AUTH\t1\tPLAIN\tservice=smtp\tresp=" + dvB64("\x00alice\x00secret") + "\r\nAUTH\t2\tLOGIN\tservice=\x01t\nCONT\t2\t\n"))
	path := startDvTestServer(f, &DovecotServer{Backend: newDvTestBackend(), RequestTimeout: time.Second})
	f.Fuzz(func(t *testing.T, in []byte) {
		nc, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		ids := map[uint32]bool{}
		for line := range strings.SplitSeq(string(in), "\n") {
			f := strings.Split(strings.TrimSuffix(line, "\r"), "\t")
			if len(f) > 1 && (f[0] == "AUTH" || f[0] == "CONT") {
				if id, ok := parseDovecotID(f[1]); ok {
					ids[id] = true
				}
			}
		}
		done := make(chan []byte)
		go func() {
			out, _ := io.ReadAll(nc)
			done <- out
		}()
		nc.Write(in)
		nc.(*net.UnixConn).CloseWrite()
		out := <-done
		r := bufio.NewReader(bytes.NewReader(out))
		inHandshake := true
		for {
			line, err := r.ReadString('\n')
			if err == io.EOF {
				if line != "" {
					t.Fatalf("reply without newline: %q", line)
				}
				break
			}
			line = strings.TrimSuffix(line, "\n")
			f := strings.Split(line, "\t")
			if inHandshake {
				switch f[0] {
				case "VERSION", "MECH", "SPID", "CUID", "COOKIE":
					continue
				case "DONE":
					inHandshake = false
					continue
				}
				t.Fatalf("handshake line %q", line)
			}
			switch f[0] {
			case "OK", "FAIL", "CONT":
			default:
				t.Fatalf("reply %q", line)
			}
			if len(f) < 2 {
				t.Fatalf("reply %q without an id", line)
			}
			if id, ok := parseDovecotID(f[1]); !ok || !ids[id] || f[1] != strconv.FormatUint(uint64(id), 10) {
				t.Fatalf("reply %q for an id the client did not use", line)
			}
			if f[0] == "CONT" && len(f) != 3 {
				t.Fatalf("CONT reply %q", line)
			}
		}
	})
}

// FuzzDovecotClient feeds arbitrary server bytes to the client: the
// handshake and the replies to a PLAIN and a LOGIN exchange. The client
// must return (an error or a result) without crashing or hanging, and an
// accepted exchange must name a user.
func FuzzDovecotClient(f *testing.F) {
	hs := "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\t00\nDONE\n"
	f.Add([]byte(hs + "OK\t1\tuser=alice\n"))
	f.Add([]byte(hs + "FAIL\t1\tuser=al\x01tice\tcode=temp_fail\treason=x\x01ty\n"))
	f.Add([]byte(hs + "OK\t1\tuser=bob\tnologin\treason=no\nCONT\t2\tVXNlcm5hbWU6\nCONT\t2\tUGFzc3dvcmQ6\nOK\t2\tuser=alice\n"))
	f.Add([]byte(hs + "CONT\t1\t!!\nFAIL\t2\ttemp\n"))
	f.Add([]byte("VERSION\t1\t2\nSPID\t1\n"))
	f.Add([]byte("VERSION\t1\nMECH\t\nDONE\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		defer a.Close()
		go func() {
			// The server: write the input, swallow the requests,
			// then hang up.
			go io.Copy(io.Discard, b)
			b.Write(in)
			b.Close()
		}()
		a.SetDeadline(time.Now().Add(10 * time.Second))
		conn, err := newDovecotClientConn(a, time.Second)
		if err != nil {
			return
		}
		a.SetDeadline(time.Time{})
		c := &DovecotClient{network: "fuzz", address: "fuzz", conn: conn, mechs: conn.mechs,
			opts: DovecotClientOptions{Service: "smtp", Timeout: 5 * time.Second, Logger: dvQuietLog}}
		go conn.readLoop(dvQuietLog)
		ctx := context.Background()
		user, err := c.Verify(ctx, DovecotRequest{}, "alice", "secret")
		if err == nil && user == "" {
			t.Fatal("accepted without a user")
		}
		x, err := c.Start("LOGIN", DovecotRequest{})
		if err != nil {
			return
		}
		for _, resp := range [][]byte{nil, []byte("alice"), []byte("secret"), []byte("more")} {
			_, done, err := x.Next(ctx, resp)
			if err != nil {
				break
			}
			if done {
				if x.User() == "" {
					t.Fatal("LOGIN accepted without a user")
				}
				break
			}
		}
	})
}
