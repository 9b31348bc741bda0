package smtpserver

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/postkit-mail/postkit/restrictions"
)

// logf logs one line in Postfix's maillog wording, with the client as
// structured attributes.
func (s *session) logf(format string, args ...any) {
	if !s.srv.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	level := slog.LevelInfo
	if strings.HasPrefix(msg, "warning: ") {
		level = slog.LevelWarn
	}
	s.srv.log.Log(context.Background(), level, msg,
		slog.String("client", s.namaddr), slog.String("queue_id", s.snap.QueueID))
}

// logEvent logs a restriction event in Postfix's layout:
// "NOQUEUE: reject: RCPT from NAME[ADDR]: 554 5.7.1 ...; from=<s> to=<r> proto=ESMTP helo=<h>".
// The checker's entry text already holds what follows "from NAME[ADDR]: ".
func (s *session) logEvent(e restrictions.LogEntry, verb string) {
	id := s.snap.QueueID
	if id == "" {
		id = "NOQUEUE"
	}
	var b strings.Builder
	b.WriteString(id + ": " + e.Kind + ": " + verb + " from " + s.namaddr + ": " + e.Text + ";")
	if s.env != nil || s.snap.Sender != "" {
		b.WriteString(" from=<" + s.snap.Sender + ">")
	}
	if s.snap.Recipient != "" {
		b.WriteString(" to=<" + s.snap.Recipient + ">")
	}
	b.WriteString(" proto=" + s.baseProtocol())
	if s.snap.Helo != "" {
		b.WriteString(" helo=<" + s.snap.Helo + ">")
	}
	s.logf("%s", b.String())
}

// logClient is the "QUEUEID: client=NAME[ADDR]" line of a new message.
func (s *session) logClient() {
	line := s.snap.QueueID + ": client=" + s.namaddr
	if s.snap.SASLMethod != "" {
		line += ", sasl_method=" + s.snap.SASLMethod + ", sasl_username=" + s.snap.SASLUsername
	}
	s.logf("%s", line)
}

// logDisconnect is the "disconnect from NAME[ADDR] ehlo=1 mail=1 ...
// commands=N" line: per command ok/total, "/total" only when they differ.
func (s *session) logDisconnect() {
	var b strings.Builder
	b.WriteString("disconnect from " + s.namaddr)
	ok, total := 0, 0
	for _, name := range cmdOrder {
		c := s.counts[name]
		if c == nil {
			continue
		}
		ok += c[0]
		total += c[1]
		b.WriteString(" " + name + "=" + fraction(c[0], c[1]))
	}
	b.WriteString(" commands=" + fraction(ok, total))
	if total == 0 {
		b.WriteString("/0")
	}
	s.logf("%s", b.String())
}

func fraction(ok, total int) string {
	if ok == total {
		return strconv.Itoa(ok)
	}
	return strconv.Itoa(ok) + "/" + strconv.Itoa(total)
}
