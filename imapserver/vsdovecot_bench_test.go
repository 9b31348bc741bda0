package imapserver

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/corpus"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// reportRates reports the operations per second of both servers and
// their ratio (postkit's rate over Dovecot's: above 1, postkit is faster).
func reportRates(b *testing.B, n int, tPK, tDV time.Duration) {
	pk, dv := float64(n)/tPK.Seconds(), float64(n)/tDV.Seconds()
	b.ReportMetric(pk, "postkit-ops/s")
	b.ReportMetric(dv, "dovecot-ops/s")
	b.ReportMetric(pk/dv, "postkit/dovecot-rate")
}

// messages returns STATUS INBOX (MESSAGES) as a number.
func messages(b testing.TB, r *rawIMAP) int {
	l := r.lines(b, "STATUS INBOX (MESSAGES)")
	var n int
	if i := strings.Index(l, "MESSAGES "); i < 0 {
		b.Fatalf("STATUS: %q", l)
	} else {
		fmt.Sscanf(l[i+len("MESSAGES "):], "%d", &n)
	}
	return n
}

// BenchmarkAppendVsDovecot: APPEND of one 4 KB SpamAssassin message to
// INBOX over one connection, postkit and Dovecot 2.3 in the same run
// (each iteration appends to both). Both store it durably before the
// tagged OK (postkit fsyncs the file and the directory; Dovecot's
// mail_fsync = optimized). The message counts are checked afterwards.
func BenchmarkAppendVsDovecot(b *testing.B) {
	dv := startDovecotIMAPServer(b, oracle.DovecotIMAPOptions{})
	e := newEnv(b)
	_, pkAddr := e.start(b, e.options())
	var msg string
	for _, p := range corpus.SpamAssassin(b) {
		m := string(corpus.Message(b, p))
		if len(m) > 3000 && len(m) < 6000 {
			msg = strings.ReplaceAll(strings.ReplaceAll(m, "\r\n", "\n"), "\n", "\r\n")
			break
		}
	}
	if msg == "" {
		b.Fatal("no corpus message of 3-6 KB")
	}
	cmd := fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(msg), msg)
	pk, dc := dialRaw(b, pkAddr), dialRaw(b, dv.Addr)
	pk.cmd(b, cmd)
	dc.cmd(b, cmd)
	var tPK, tDV time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		pk.cmd(b, cmd)
		tPK += time.Since(start)
		start = time.Now()
		dc.cmd(b, cmd)
		tDV += time.Since(start)
	}
	b.StopTimer()
	if np, nd := messages(b, pk), messages(b, dc); np != b.N+1 || nd != b.N+1 {
		b.Fatalf("after %d APPENDs: postkit has %d messages, Dovecot %d", b.N+1, np, nd)
	}
	reportRates(b, b.N, tPK, tDV)
}

// BenchmarkLoginVsDovecot: a whole short session (connect, greeting,
// LOGIN, LOGOUT, close) against postkit and Dovecot 2.3 in the same run,
// user alice with an existing Maildir. Dovecot as configured by default
// starts an imap-login process per connection and an imap process per
// session; postkit opens the user's store (and checks the special-use
// folders, made at the first login).
func BenchmarkLoginVsDovecot(b *testing.B) {
	dv := startDovecotIMAPServer(b, oracle.DovecotIMAPOptions{})
	e := newEnv(b)
	_, pkAddr := e.start(b, e.options())
	session := func(addr string) {
		r := dialRaw(b, addr)
		r.cmd(b, "LOGOUT")
		r.c.Close()
	}
	session(pkAddr)
	session(dv.Addr)
	var tPK, tDV time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		session(pkAddr)
		tPK += time.Since(start)
		start = time.Now()
		session(dv.Addr)
		tDV += time.Since(start)
	}
	b.StopTimer()
	if got := strings.Count(e.log.String(), "imap-login: Login: user=<alice>"); got != b.N+1 {
		b.Fatalf("postkit logged %d logins, want %d", got, b.N+1)
	}
	reportRates(b, b.N, tPK, tDV)
}

// BenchmarkIdleMemoryVsDovecot: 5,000 connections logged in, INBOX (100
// messages) selected, in IDLE, against postkit running in a child
// process (so that its resident memory is the server's alone). In
// "10-per-user" users u0..u499 hold 10 connections each (Dovecot's
// default mail_max_userip_connections), so each mailbox is open in 10
// sessions; in "1-per-user" 5,000 users hold one each. Reported for postkit's whole process
// with 5,000 connections (measured once the mailboxes have hibernated:
// Options.IdleHibernate is 3 s there), in MB: the heap (live objects and free slots,
// after a GC), goroutine stacks, all memory the Go runtime has mapped,
// and VmRSS; and the heap+stacks and RSS growth per connection over the
// process before the connections.
//
// Dovecot runs a process per session: 200 sessions (the same
// mailboxes, as many per user) are measured in the same run, as the sum of the imap
// processes' RSS (shared pages counted in each) and PSS (shared pages
// divided), and extrapolated linearly to 5,000 (dovecot-*-MB-at-5000;
// the login, auth and master processes, a few MB, are left out).
func BenchmarkIdleMemoryVsDovecot(b *testing.B) {
	b.Run("10-per-user", func(b *testing.B) { benchIdleMemory(b, 500) })
	b.Run("1-per-user", func(b *testing.B) { benchIdleMemory(b, 5000) })
}

func benchIdleMemory(b *testing.B, users int) {
	const conns, msgs, dvConns = 5000, 100, 200
	dvUsers := dvConns * users / conns
	dir := b.TempDir()
	idleUsers(b, dir, users, msgs)
	var passwd strings.Builder
	for u := 0; u < dvUsers; u++ {
		fmt.Fprintf(&passwd, "u%d:{PLAIN}secret\n", u)
	}
	dv := startDovecotIMAPServer(b, oracle.DovecotIMAPOptions{Passwd: passwd.String(), ProcessLimit: dvConns + 50})
	for u := 0; u < dvUsers; u++ {
		name := fmt.Sprintf("u%d", u)
		linkMaildir(b, filepath.Join(dir, "home", name, "Maildir"), filepath.Join(dv.Home(name), "Maildir"))
		dv.Chown(b, dv.Home(name))
	}
	for i := 0; i < b.N; i++ {
		child := startMemChild(b, dir)
		base := child.measure(b)
		var cs []net.Conn
		for k := 0; k < conns; k++ {
			cs = append(cs, idleConn(b, child.addr, fmt.Sprintf("u%d", k%users)))
		}
		time.Sleep(idleChildHibernate + time.Second) // the mailboxes hibernate
		m := child.measure(b)
		for _, c := range cs {
			c.Close()
		}
		child.stdin.Close()
		child.cmd.Wait()

		cs = cs[:0]
		for k := 0; k < dvConns; k++ {
			cs = append(cs, idleConn(b, dv.Addr, fmt.Sprintf("u%d", k%dvUsers)))
		}
		n, rss, pss := dv.Sessions()
		for _, c := range cs {
			c.Close()
		}
		if n != dvConns {
			b.Fatalf("Dovecot runs %d imap processes for %d sessions: %s", n, dvConns, dv.Log(b))
		}

		mb := func(v int64) float64 { return float64(v) / (1 << 20) }
		b.ReportMetric(mb(m["heap"]), "heap-MB")
		b.ReportMetric(mb(m["stacks"]), "stacks-MB")
		b.ReportMetric(mb(m["total"]), "go-total-MB")
		b.ReportMetric(mb(m["rss"]), "rss-MB")
		b.ReportMetric(float64(m["heap"]+m["stacks"]-base["heap"]-base["stacks"])/conns, "B/conn")
		b.ReportMetric(float64(m["rss"]-base["rss"])/conns, "rss-B/conn")
		b.ReportMetric(mb(rss*conns/dvConns), "dovecot-rss-MB-at-5000")
		b.ReportMetric(mb(pss*conns/dvConns), "dovecot-pss-MB-at-5000")
		b.ReportMetric(float64(m["rss"])/float64(pss*conns/dvConns), "postkit/dovecot-pss")
	}
}
