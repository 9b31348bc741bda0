package pop3server

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mailbox"
)

// benchServers starts postkit and Dovecot 2.3 over copies of one maildrop
// (a 1 MB message of 80-column lines, then 99 small ones) and returns
// their addresses and the big message's CRLF size.
func benchServers(b *testing.B) (pk, dove string, size int64) {
	b.Helper()
	e := startServer(b, func(s *Server) {
		s.AllowPlaintextAuth = true
		s.MaxIPConnections = -1
	})
	line := strings.Repeat("abcdefghij", 8) + "\n"
	big := "Subject: big\n\n" + strings.Repeat(line, 1<<20/len(line))
	msgs := []string{big}
	for i := 0; i < 99; i++ {
		msgs = append(msgs, fmt.Sprintf("Subject: small %d\n\nhello\n", i))
	}
	base := time.Now().Add(-200 * time.Second)
	for i, m := range msgs {
		if _, err := mailbox.DeliverMaildir(context.Background(), e.maildir("alice"), strings.NewReader(m),
			mailbox.MaildirOptions{Create: true, Hub: e.Srv.Hub, Time: base.Add(time.Duration(i) * time.Second)}); err != nil {
			b.Fatal(err)
		}
	}
	size = int64(len(big) + strings.Count(big, "\n"))
	mailRoot, err := os.MkdirTemp("", "dvpbench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(mailRoot) })
	os.Chmod(mailRoot, 0o755)
	src := e.maildir("alice")
	dst := filepath.Join(mailRoot, "alice")
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dst, sub), 0o700)
	}
	ents, _ := os.ReadDir(filepath.Join(src, "new"))
	for _, ent := range ents {
		data, _ := os.ReadFile(filepath.Join(src, "new", ent.Name()))
		os.WriteFile(filepath.Join(dst, "new", ent.Name()), data, 0o600)
	}
	d := oracle.StartDovecotPOP3(b, oracle.DovecotPOP3Options{
		Passwd:       "alice:{PLAIN}secret\n",
		MailLocation: "maildir:" + mailRoot + "/%u",
		LockSession:  true,
		Extra:        "mail_max_userip_connections = 1000\n",
	})
	d.Chown(b, mailRoot)
	return e.Addr, d.Addr, size
}

// BenchmarkPOP3 compares postkit with Dovecot 2.3 in one run: RETR of a
// 1 MB message on a logged-in session (throughput), and whole sessions
// (connect, USER, PASS, STAT, QUIT) per second.
func BenchmarkPOP3(b *testing.B) {
	pk, dove, size := benchServers(b)
	for _, srv := range []struct{ name, addr string }{{"dovecot", dove}, {"postkit", pk}} {
		b.Run("RETR1MB/"+srv.name, func(b *testing.B) {
			c := dial(b, srv.addr)
			c.login("alice", "secret")
			want := fmt.Sprintf("+OK %d octets", size)
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if got := c.cmd("RETR 1"); got != want {
					b.Fatalf("RETR = %q", got)
				}
				c.skipMulti()
			}
			b.StopTimer()
			c.cmd("QUIT")
		})
		b.Run("login/"+srv.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c := dial(b, srv.addr)
				c.login("alice", "secret")
				if got := c.cmd("STAT"); !strings.HasPrefix(got, "+OK 100 ") {
					b.Fatalf("STAT = %q", got)
				}
				if got := c.cmd("QUIT"); !strings.HasPrefix(got, "+OK") {
					b.Fatalf("QUIT = %q", got)
				}
				c.conn.Close()
			}
		})
	}
}

// skipMulti reads a multi-line body up to its "." line without keeping it,
// so that the client costs little next to the server.
func (c *client) skipMulti() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(time.Minute))
	for {
		l, err := c.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			c.t.Fatal(err)
		}
		if err == nil && len(l) == 3 && l[0] == '.' && l[1] == '\r' {
			return
		}
	}
}
