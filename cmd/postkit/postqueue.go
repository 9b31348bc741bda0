package main

// postkit postqueue (and mailq, sendmail -bp): Postfix's postqueue(1)
// against a running postkit server, through the control socket of
// package queue/control ($queue_directory/control). -p and -j list the
// queue; -f, -s SITE and -i ID make deferred mail due now, and the
// running scheduler acts on it at once.
//
// Checked against Postfix 3.7's postqueue: with the mail system down,
// -p and -j warn "Mail system is down -- accessing queue directly" and
// list the queue files themselves (here: when the queue's lock is free),
// while -f, -s and -i fail with "Cannot flush mail queue - mail system
// is down"; -s serves only the domains of fast_flush_domains ("Flush
// service is not configured for destination"); fatal errors, usage
// included, exit 69 (EX_UNAVAILABLE).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/queue/control"
)

const pqUsage = "usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site"

// qcFatal is a fatal error of the queue commands: "PROG: fatal: MSG",
// exit code.
type qcFatal struct {
	code int
	msg  string
}

func (e *qcFatal) Error() string { return e.msg }

func qcFatalf(code int, format string, args ...any) error {
	return &qcFatal{code: code, msg: fmt.Sprintf(format, args...)}
}

// qcFail prints err as PROG's fatal message and returns the exit code.
func qcFail(prog string, stderr io.Writer, err error, code int) int {
	var f *qcFatal
	if errors.As(err, &f) {
		fmt.Fprintf(stderr, "%s: fatal: %s\n", prog, f.msg)
		return f.code
	}
	fmt.Fprintf(stderr, "%s: fatal: %v\n", prog, err)
	return code
}

// qcOpt is one option from qcGetopt.
type qcOpt struct {
	c   byte
	arg string
}

// qcGetopt is glibc's getopt(3) as Postfix's queue commands call it:
// options may follow operands (GNU argument permutation) until "--".
// An unknown option or a missing argument prints glibc's complaint and
// returns an error.
func qcGetopt(prog, optstring string, args []string, stderr io.Writer) (opts []qcOpt, operands []string, err error) {
	bad := errors.New("usage")
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			operands = append(operands, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			operands = append(operands, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			k := strings.IndexByte(optstring, c)
			if k < 0 || c == ':' {
				fmt.Fprintf(stderr, "%s: invalid option -- '%c'\n", prog, c)
				return nil, nil, bad
			}
			if k+1 < len(optstring) && optstring[k+1] == ':' {
				if j+1 < len(a) {
					opts = append(opts, qcOpt{c, a[j+1:]})
				} else if i+1 < len(args) {
					i++
					opts = append(opts, qcOpt{c, args[i]})
				} else {
					fmt.Fprintf(stderr, "%s: option requires an argument -- '%c'\n", prog, c)
					return nil, nil, bad
				}
				break
			}
			opts = append(opts, qcOpt{c, ""})
		}
	}
	return opts, operands, nil
}

// qcQueueDir reads queue_directory from DIR/main.cf (-c DIR, else
// MAIL_CONFIG, else /etc/postfix).
func qcQueueDir(configDir string) (string, error) {
	cfg, err := qcConfig(configDir)
	if err != nil {
		return "", err
	}
	return qcQueueDirOf(cfg)
}

// qcConfig loads DIR/main.cf (-c DIR, else MAIL_CONFIG, else
// /etc/postfix).
func qcConfig(configDir string) (*config.Config, error) {
	if configDir == "" {
		configDir = os.Getenv("MAIL_CONFIG")
	}
	if configDir == "" {
		configDir = "/etc/postfix"
	}
	cfg, err := config.Load(configDir)
	if err != nil {
		return nil, errors.New(pmConfigError(configDir, err))
	}
	return cfg, nil
}

func qcQueueDirOf(cfg *config.Config) (string, error) {
	qdir, _, err := cfg.Lookup("queue_directory")
	if err != nil {
		return "", err
	}
	if qdir == "" {
		return "", errors.New("queue_directory is empty")
	}
	return qdir, nil
}

// errQueueBusy: the queue's lock is taken, yet no server answers on the
// control socket.
var errQueueBusy = errors.New("the queue is in use by a process that does not answer on its control socket")

// errNoQueue: queue_directory exists but no server ever made a queue in
// it; it holds no mail.
var errNoQueue = errors.New("no queue yet")

// qcOpenDirect opens the queue itself, as Postfix's commands read the
// queue files when the mail system is down. It fails when the queue is
// not there (nothing is created: errNoQueue when the directory exists)
// or its lock is taken.
func qcOpenDirect(qdir string) (*queue.Queue, error) {
	if _, err := os.Stat(qdir); err != nil {
		return nil, fmt.Errorf("chdir %s: %s", qdir, pmStrerror(err))
	}
	if _, err := os.Stat(filepath.Join(qdir, "VERSION")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errNoQueue
		}
		return nil, err
	}
	q, err := queue.Open(qdir, queue.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		if strings.Contains(err.Error(), "in use by another process") {
			return nil, errQueueBusy
		}
		return nil, err
	}
	return q, nil
}

func postqueueMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const prog = "postqueue"
	fail := func(err error) int { return qcFail(prog, stderr, err, exUnavailable) }
	opts, operands, err := qcGetopt(prog, "c:fi:jps:v", args, stderr)
	if err != nil {
		return fail(qcFatalf(exUnavailable, pqUsage))
	}
	configDir, mode, arg := "", byte(0), ""
	var moreIDs []string // -i may be given more than once
	for _, o := range opts {
		switch o.c {
		case 'c':
			configDir = o.arg
		case 'v':
		default:
			if mode == 'i' && o.c == 'i' {
				moreIDs = append(moreIDs, o.arg)
				continue
			}
			if mode != 0 {
				return fail(qcFatalf(exUnavailable, pqUsage))
			}
			mode, arg = o.c, o.arg
		}
	}
	if mode == 0 || len(operands) > 0 {
		return fail(qcFatalf(exUnavailable, pqUsage))
	}
	cfg, err := qcConfig(configDir)
	if err != nil {
		return fail(err)
	}
	if code := pqRun(prog, cfg, mode, arg, stdout, stderr); code != exOK || mode != 'i' {
		return code
	}
	for _, id := range moreIDs {
		if code := pqRun(prog, cfg, mode, id, stdout, stderr); code != exOK {
			return code
		}
	}
	return exOK
}

// pqFlushable reports whether postqueue -s may flush site: Postfix's
// flush service serves only the domains in fast_flush_domains (default
// $relay_domains).
func pqFlushable(ctx context.Context, cfg *config.Config, site string) (bool, error) {
	r := config.NewReader(cfg)
	items := r.List("fast_flush_domains")
	parent := r.ParentStyle("fast_flush_domains")
	if err := r.Err(); err != nil {
		return false, err
	}
	if len(items) == 0 {
		return false, nil
	}
	l, err := maps.NewMatchList(ctx, maps.MatchListConfig{Name: "fast_flush_domains", Kind: maps.DomainMatch, ParentStyle: parent}, items)
	if err != nil {
		return false, err
	}
	return l.Match(ctx, strings.ToLower(site))
}

// pqRun performs postqueue's mode (p, j, f, s, i) on the queue of cfg.
func pqRun(prog string, cfg *config.Config, mode byte, arg string, stdout, stderr io.Writer) int {
	fail := func(err error) int { return qcFail(prog, stderr, err, exUnavailable) }
	ctx := context.Background()
	qdir, err := qcQueueDirOf(cfg)
	if err != nil {
		return fail(err)
	}
	if mode == 's' {
		ok, err := pqFlushable(ctx, cfg, arg)
		if err != nil {
			return fail(err)
		}
		if !ok {
			return fail(qcFatalf(exUnavailable, "Flush service is not configured for destination \"%s\"", arg))
		}
	}
	c := &control.Client{Path: control.SocketPath(qdir), Warn: func(s string) {
		fmt.Fprintf(stderr, "%s: warning: %s\n", prog, s)
	}}
	switch mode {
	case 'p', 'j':
		err = c.Mailq(ctx, stdout, mode == 'j')
		if errors.Is(err, control.ErrNotRunning) {
			fmt.Fprintf(stderr, "%s: warning: Mail system is down -- accessing queue directly (Connect to the postkit control service: %v)\n",
				prog, pmStrerror(err))
			q, oerr := qcOpenDirect(qdir)
			if errors.Is(oerr, errNoQueue) {
				if mode == 'p' {
					fmt.Fprint(stdout, "Mail queue is empty\n")
				}
				return exOK
			}
			if oerr != nil {
				return fail(qcFatalf(exUnavailable, "Queue report unavailable - %v", oerr))
			}
			if mode == 'j' {
				err = q.MailqJSON(ctx, stdout)
			} else {
				err = q.Mailq(ctx, stdout)
			}
			if cerr := q.Close(); err == nil {
				err = cerr
			}
		}
	case 'f':
		err = c.Flush(ctx)
	case 's':
		_, err = c.FlushSite(ctx, arg)
	case 'i':
		err = c.Deliver(ctx, arg)
	}
	if err == nil {
		return exOK
	}
	var ce *control.Error
	if mode != 'p' && mode != 'j' && (errors.Is(err, control.ErrNotRunning) ||
		errors.As(err, &ce) && ce.Kind == control.KindUnavailable) {
		return fail(qcFatalf(exUnavailable, "Cannot flush mail queue - mail system is down"))
	}
	return fail(err)
}
