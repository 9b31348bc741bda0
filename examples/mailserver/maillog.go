package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maillog writes log records as syslog writes Postfix's to
// /var/log/mail.log: "Mon DD HH:MM:SS host postfix/PROGRAM[PID]: text",
// so pflogsumm and the usual greps read it. The packages log their lines
// in Postfix's wording; the handler adds the prefix. Records of level
// warning or error that do not say so get "warning: " or "error: ",
// and their attributes (other than client and queue_id, which the text
// already holds) are appended as key=value.
type maillog struct {
	mu   *sync.Mutex
	w    io.Writer
	host string
	pid  int
	now  func() time.Time
}

func newMaillog(w io.Writer) *maillog {
	host, _ := os.Hostname()
	if i := strings.IndexByte(host, '.'); i > 0 {
		host = host[:i]
	}
	if host == "" {
		host = "localhost"
	}
	return &maillog{mu: new(sync.Mutex), w: w, host: host, pid: os.Getpid(), now: time.Now}
}

// logger returns a logger whose lines carry "postfix/program".
func (m *maillog) logger(program string) *slog.Logger {
	return slog.New(&progHandler{m: m, prog: program})
}

type progHandler struct {
	m    *maillog
	prog string
	// ident, when set, replaces "postfix/prog[pid]": the IMAP and POP3
	// lines read as Dovecot's do in syslog ("dovecot: imap-login: ...").
	ident string
	min   slog.Level
	attrs []slog.Attr
	// agentOf, when set, makes this the scheduler's handler (the
	// scheduler's log holds the lines of qmgr and of the delivery agents).
	agentOf func(queueID string) string
	forget  func(queueID string)
}

func (h *progHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= max(h.min, slog.LevelInfo)
}

func (h *progHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *progHandler) WithGroup(string) slog.Handler { return h }

func (h *progHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.Enabled(ctx, r.Level) {
		return nil
	}
	msg := r.Message
	switch {
	case r.Level >= slog.LevelError && !hasLevelWord(msg):
		msg = "error: " + msg
	case r.Level >= slog.LevelWarn && !hasLevelWord(msg):
		msg = "warning: " + msg
	}
	if r.Level >= slog.LevelWarn {
		var b strings.Builder
		add := func(a slog.Attr) bool {
			if a.Key != "client" && a.Key != "queue_id" {
				fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			}
			return true
		}
		for _, a := range h.attrs {
			add(a)
		}
		r.Attrs(add)
		msg += b.String()
	}
	prog := h.prog
	if h.agentOf != nil {
		var id string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "queue_id" {
				id = a.Value.String()
			}
			return true
		})
		prog = h.agentOfLine(msg, id)
		if id != "" && msg == id+": removed" && h.forget != nil {
			h.forget(id)
		}
	}
	t := r.Time
	if t.IsZero() {
		t = h.m.now()
	}
	// "Mmm dd hh:mm:ss host postfix/prog[pid]: msg", appended into one
	// buffer: a line is logged several times per message.
	line := make([]byte, 0, 64+len(h.m.host)+len(prog)+len(msg))
	line = t.AppendFormat(line, time.Stamp)
	line = append(line, ' ')
	line = append(line, h.m.host...)
	line = append(line, ' ')
	if h.ident != "" {
		line = append(line, h.ident...)
	} else {
		line = append(line, "postfix/"...)
		line = append(line, prog...)
		line = append(line, '[')
		line = strconv.AppendInt(line, int64(h.m.pid), 10)
		line = append(line, ']')
	}
	line = append(line, ": "...)
	line = append(line, strings.ReplaceAll(msg, "\n", " ")...)
	line = append(line, '\n')
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	_, err := h.m.w.Write(line)
	return err
}

func hasLevelWord(msg string) bool {
	for _, p := range []string{"warning: ", "error: ", "fatal: ", "panic: "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// warnings returns a logger that passes only warnings and errors: for
// packages whose Info records are structured events that another logger
// already writes as Postfix's lines (the restrictions' events, which the
// SMTP server logs as "NOQUEUE: reject: ...").
func (m *maillog) warnings(program string) *slog.Logger {
	return slog.New(&progHandler{m: m, prog: program, min: slog.LevelWarn})
}

// dovecot returns the logger of the IMAP and POP3 servers, whose
// messages start with Dovecot's process names ("imap-login: Login: ...",
// "pop3(demo)<...>: Disconnected: ..."): the lines read
// "Mon DD HH:MM:SS host dovecot: imap-login: ...", as Dovecot's in syslog.
func (m *maillog) dovecot() *slog.Logger {
	return slog.New(&progHandler{m: m, ident: "dovecot"})
}

// dovecotWarnings is dovecot() for warnings and errors only: the
// authenticator's, whose failed logins the IMAP and POP3 servers log
// already.
func (m *maillog) dovecotWarnings() *slog.Logger {
	return slog.New(&progHandler{m: m, ident: "dovecot", min: slog.LevelWarn})
}

// schedulerLogger is the scheduler's logger. Postfix writes the
// "to=<...>, relay=..., status=..." lines from the delivery agent
// (postfix/local, postfix/smtp, ...) and the rest from postfix/qmgr. The
// scheduler logs both, with the queue ID as an attribute; agentOf tells
// which agent (master.cf command) the message's delivery went to, ""
// when it does not know.
// forget is called when a message has left the queue.
func (m *maillog) schedulerLogger(agentOf func(queueID string) string, forget func(queueID string)) *slog.Logger {
	return slog.New(&progHandler{m: m, prog: "qmgr", agentOf: agentOf, forget: forget})
}

// agentOfLine is the program of a scheduler line: the agent's for a
// delivery status line, qmgr's for the rest.
func (h *progHandler) agentOfLine(msg, queueID string) string {
	i := strings.Index(msg, ", relay=")
	if i < 0 || !strings.Contains(msg[:i], ": to=<") {
		return "qmgr"
	}
	if h.agentOf != nil {
		if a := h.agentOf(queueID); a != "" {
			return a
		}
	}
	// No delivery was tried (a routing error): trivial-rewrite's
	// error(8) verdict, or discard(8)'s.
	if strings.Contains(msg, "status=sent") {
		return "discard"
	}
	return "error"
}
