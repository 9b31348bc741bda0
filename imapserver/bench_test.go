package imapserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/internal/corpus"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// benchMaildir fills root (a Maildir) with n messages from the
// SpamAssassin corpus (repeated as needed), LF line ends, a third of
// them seen.
func benchMaildir(b *testing.B, root string, n int) { benchMaildirT(b, root, n) }

func benchMaildirT(b testing.TB, root string, n int) {
	b.Helper()
	paths := corpus.SpamAssassin(b)
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	cache := map[int][]byte{}
	for i := 0; i < n; i++ {
		k := i % len(paths)
		m, ok := cache[k]
		if !ok {
			m = []byte(strings.ReplaceAll(string(corpus.Message(b, paths[k])), "\r\n", "\n"))
			cache[k] = m
		}
		flags := ""
		if i%3 == 0 {
			flags = "S"
		}
		name := fmt.Sprintf("%d.M%dP1.bench:2,%s", 1700000000+i, i, flags)
		if err := os.WriteFile(filepath.Join(root, "cur", name), m, 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

// clientBuf is the test client's read buffer.
const clientBuf = 4096

type rawIMAP struct {
	c   net.Conn
	br  *bufio.Reader
	tag int
}

func dialRaw(b testing.TB, addr string) *rawIMAP { return dialUser(b, addr, "alice") }

func dialUser(b testing.TB, addr, user string) *rawIMAP {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	r := &rawIMAP{c: c, br: bufio.NewReaderSize(c, clientBuf)}
	r.br.ReadString('\n')
	r.cmd(b, "LOGIN "+user+" secret \x00"+addr)
	return r
}

// lines sends one command and returns its untagged answer lines.
func (r *rawIMAP) lines(b testing.TB, c string) string {
	r.tag++
	tag := "t" + strconv.Itoa(r.tag)
	r.c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(r.c, "%s %s\r\n", tag, c)
	var out strings.Builder
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			b.Fatalf("%s: %v", c, err)
		}
		if strings.HasPrefix(l, tag+" ") {
			return out.String()
		}
		out.WriteString(l)
	}
}

// cmd sends one command and reads the answer (literals included) up to
// its tagged reply; it returns the number of untagged lines.
func (r *rawIMAP) cmd(b testing.TB, c string) int {
	c, note, _ := strings.Cut(c, " \x00")
	r.tag++
	tag := "t" + strconv.Itoa(r.tag)
	r.c.SetDeadline(time.Now().Add(5 * time.Minute))
	fmt.Fprintf(r.c, "%s %s\r\n", tag, c)
	n := 0
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			b.Fatalf("%s %s: %v", c, note, err)
		}
		for strings.HasSuffix(l, "}\r\n") { // a literal follows
			i := strings.LastIndexByte(l, '{')
			size, _ := strconv.Atoi(strings.TrimSuffix(l[i+1:len(l)-3], "+"))
			if _, err := r.br.Discard(size); err != nil {
				b.Fatal(err)
			}
			if l, err = r.br.ReadString('\n'); err != nil {
				b.Fatal(err)
			}
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				b.Fatalf("%s %s: %s", c, note, l)
			}
			return n
		}
		n++
	}
}

// BenchmarkSelectFetchVsDovecot: SELECT and FETCH 1:* (UID FLAGS
// RFC822.SIZE ENVELOPE) of one 10,000-message Maildir, served by postkit
// and by Dovecot 2.3 in the same run (each iteration does both; the
// "postkit/dovecot" metric is the time ratio). Both have warmed their
// caches (Dovecot's index, postkit's size and envelope cache) in a first
// pass that is not timed.
func BenchmarkSelectFetchVsDovecot(b *testing.B) {
	dv := startDovecotIMAPServer(b, oracle.DovecotIMAPOptions{})
	dvAddr, home := dv.Addr, dv.Home("alice")
	root := filepath.Join(home, "Maildir")
	benchMaildir(b, root, 10000)
	dv.Chown(b, home)
	e := newEnv(b)
	opts := e.options()
	opts.DisableSpecialFolders = true
	opts.MailRoot = func(context.Context, auth.User) (string, error) { return root, nil }
	_, pkAddr := e.start(b, opts)

	pk, dc := dialRaw(b, pkAddr), dialRaw(b, dvAddr)
	const fetch = "FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"
	for _, r := range []*rawIMAP{pk, dc} {
		r.cmd(b, "SELECT INBOX")
		if n := r.cmd(b, fetch); n != 10000 {
			b.Fatalf("warm-up FETCH gave %d lines", n)
		}
	}
	var tPK, tDV time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		pk.cmd(b, "SELECT INBOX")
		pk.cmd(b, fetch)
		tPK += time.Since(start)
		start = time.Now()
		dc.cmd(b, "SELECT INBOX")
		dc.cmd(b, fetch)
		tDV += time.Since(start)
	}
	b.ReportMetric(float64(tPK.Milliseconds())/float64(b.N), "postkit-ms/op")
	b.ReportMetric(float64(tDV.Milliseconds())/float64(b.N), "dovecot-ms/op")
	b.ReportMetric(float64(tPK)/float64(tDV), "postkit/dovecot")
}

func processRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
