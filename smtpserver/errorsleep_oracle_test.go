package smtpserver

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// sleepProbe plays lines one at a time on addr and reports for each
// reply whether it came late (the server slept before it): the time from
// sending the line (or from the previous reply, for a reply the server
// sends unasked) to the reply. extra is how many unasked replies to wait
// for at the end (the 421 of smtpd_hard_error_limit).
func sleepProbe(t *testing.T, addr string, lines []string, extra int, late time.Duration) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	var out []string
	mark := func(start time.Time, what string) {
		r, err := oracle.ReadReply(br)
		if err != nil {
			out = append(out, what+": (closed)")
			return
		}
		d := time.Since(start)
		slept := "no sleep"
		if d >= late {
			slept = "sleep"
		}
		out = append(out, fmt.Sprintf("%s: %s: %s", what, queueIDRe.ReplaceAllString(r.String(), "queued as ID"), slept))
	}
	mark(time.Now(), "banner")
	for _, l := range lines {
		start := time.Now()
		fmt.Fprintf(c, "%s\r\n", l)
		mark(start, l)
	}
	for range extra {
		mark(time.Now(), "(unasked)")
	}
	return out
}

// TestErrorSleepAgainstPostfix checks when smtpd_error_sleep_time applies:
// which replies come late, relative to smtpd_soft_error_limit and the
// error count, and whether the 421 of smtpd_hard_error_limit does. The
// dialogue is played on both servers at once, each with a one-second
// sleep; a reply more than half a second late counts as slept.
func TestErrorSleepAgainstPostfix(t *testing.T) {
	main := oracleMain + "smtpd_error_sleep_time = 1s\nsmtpd_soft_error_limit = 2\nsmtpd_hard_error_limit = 4\n"
	pf, ours, _, _ := startPair(t, main)
	dialogues := []struct {
		name  string
		lines []string
		extra int
	}{
		{"errors", []string{"EHLO c.example", "FOO", "NOOP", "BAR", "NOOP", "RCPT TO:<a@example.com>", "BAZ"}, 1},
		// The 354 and the final reply of one DATA command; a delivered
		// message resets the error count.
		{"data", []string{"EHLO c.example", "FOO", "BAR", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>",
			"DATA", "Subject: x\r\n\r\nbody\r\n.", "NOOP", "QUIT"}, 0},
	}
	want := make([][]string, len(dialogues))
	got := make([][]string, len(dialogues))
	var wg sync.WaitGroup
	for i, d := range dialogues {
		wg.Add(2)
		go func() { defer wg.Done(); want[i] = sleepProbe(t, pf, d.lines, d.extra, 500*time.Millisecond) }()
		go func() { defer wg.Done(); got[i] = sleepProbe(t, ours, d.lines, d.extra, 500*time.Millisecond) }()
	}
	wg.Wait()
	for i, d := range dialogues {
		w, g := strings.Join(want[i], "\n"), strings.Join(got[i], "\n")
		if !strings.Contains(w, ": sleep") {
			t.Errorf("%s: Postfix never slept; the dialogue tests nothing:\n%s", d.name, w)
		}
		if w != g {
			t.Errorf("%s: differs\n--- Postfix:\n%s\n--- postkit:\n%s", d.name, w, g)
		} else {
			t.Logf("%s:\n%s", d.name, w)
		}
	}
}
