package main

// postkit postcat -q ID...: Postfix's postcat(1) for queued messages,
// with -e (envelope), -h (header) and -b (body); none of them prints all
// three. The message is read through the running server's control
// socket, or from the queue itself when no server runs and its lock is
// free. A missing message is "postcat: fatal: open queue file ID: No
// such file or directory", exit 1, as with Postfix.
//
// Not built: reading queue files by path name or from standard input
// (postkit's queue file format is its own), and -d, -o, -r, -s.

import (
	"context"
	"errors"
	"io"

	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/queue/control"
)

func postcatMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const prog = "postcat"
	const exFatal = 1
	fail := func(err error) int { return qcFail(prog, stderr, err, exFatal) }
	opts, operands, err := qcGetopt(prog, "bc:dehoqrs:v", args, stderr)
	if err != nil {
		return fail(qcFatalf(exFatal, "usage: postcat [-b (body text)] [-c config_dir] [-d (decimal record type)] [-e (envelope records)] [-h (header text)] [-q (access queue)] [-v] [file(s)...]"))
	}
	var o queue.PostcatOptions
	configDir, byID := "", false
	for _, op := range opts {
		switch op.c {
		case 'b':
			o.Body = true
		case 'e':
			o.Envelope = true
		case 'h':
			o.Header = true
		case 'q':
			byID = true
		case 'c':
			configDir = op.arg
		case 'v':
		default:
			return fail(qcFatalf(exFatal, "-%c is not built in postkit's postcat", op.c))
		}
	}
	if !byID || len(operands) == 0 {
		return fail(qcFatalf(exFatal, "postkit's postcat reads queued messages by ID only: postcat -q QUEUE_ID..."))
	}
	qdir, err := qcQueueDir(configDir)
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	c := &control.Client{Path: control.SocketPath(qdir)}
	var direct *queue.Queue
	defer func() {
		if direct != nil {
			direct.Close()
		}
	}()
	for _, id := range operands {
		if direct == nil {
			err = c.Postcat(ctx, stdout, id, o)
			if errors.Is(err, control.ErrNotRunning) {
				if direct, err = qcOpenDirect(qdir); err == nil {
					err = direct.Postcat(ctx, stdout, id, o)
				}
			}
		} else {
			err = direct.Postcat(ctx, stdout, id, o)
		}
		var ce *control.Error
		if errors.Is(err, queue.ErrNotFound) || errors.Is(err, queue.ErrBadID) || errors.Is(err, errNoQueue) ||
			errors.As(err, &ce) && ce.Kind == control.KindNotFound {
			return fail(qcFatalf(exFatal, "open queue file %s: No such file or directory", id))
		}
		if err != nil {
			return fail(err)
		}
	}
	return exOK
}
