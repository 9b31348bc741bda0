package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/postkit-mail/postkit/queue"
)

// SocketName is the control socket's name in the queue directory.
const SocketName = "control"

// SocketPath returns the control socket of the queue in queueDir.
func SocketPath(queueDir string) string { return filepath.Join(queueDir, SocketName) }

// requestTimeout bounds how long a client may take to send its request.
const requestTimeout = 30 * time.Second

// Server answers control requests for a queue and its scheduler.
type Server struct {
	q *queue.Queue
	s *queue.Scheduler
	// Logger receives the server's errors; set before Listen. nil means
	// slog.Default().
	Logger *slog.Logger
	// Mode is the socket's permission bits; set before Listen. Zero
	// means 0600: only the queue's owner may control it. 0660 lets the
	// socket's group in as well.
	Mode fs.FileMode
	// WriteTimeout bounds each write of a reply; set before Listen. A
	// client that stops reading is dropped after it, so it cannot keep
	// a goroutine and an open queue file for ever. Zero means one hour
	// (Postfix's ipc_timeout).
	WriteTimeout time.Duration

	mu     sync.Mutex
	ln     net.Listener
	path   string
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// NewServer returns a server for q. s is the scheduler running q; with
// nil, the admin operations work on the disk alone, and flush and
// deliver answer that no scheduler runs.
func NewServer(q *queue.Queue, s *queue.Scheduler) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{q: q, s: s, conns: map[net.Conn]struct{}{}, ctx: ctx, cancel: cancel}
}

// Listen creates the unix socket at path (SocketPath of the queue
// directory when empty), with the permissions of Mode, and serves it in
// the background until Close. A stale socket left by a process that
// died is replaced; one that a live server answers on is an error.
func (srv *Server) Listen(path string) error {
	if path == "" {
		path = SocketPath(srv.q.Dir())
	}
	if srv.Logger == nil {
		srv.Logger = slog.Default()
	}
	// sun_path holds 108 bytes on Linux (104 on BSDs), NUL included;
	// the socket is first bound in a temporary directory beside path
	// (listenUnix), whose name is up to 16 bytes longer.
	if len(filepath.Dir(path))+16 > 103 {
		return fmt.Errorf("control: the directory of socket %s is too long for a unix socket address (at most 87 bytes)", path)
	}
	mode := srv.Mode
	if mode == 0 {
		mode = 0o600
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return fmt.Errorf("control: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("control: a server already answers on %s", path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("control: removing the stale socket: %w", err)
		}
	}
	ln, err := listenUnix(path, mode)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	srv.mu.Lock()
	srv.ln, srv.path = ln, path
	srv.mu.Unlock()
	srv.wg.Add(1)
	go srv.serve(ln)
	return nil
}

// Addr returns the socket's path.
func (srv *Server) Addr() string {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.path
}

// Close stops accepting, ends the requests in progress, waits for them
// and removes the socket.
func (srv *Server) Close() error {
	srv.mu.Lock()
	ln := srv.ln
	srv.ln = nil
	for c := range srv.conns {
		c.Close()
	}
	srv.mu.Unlock()
	srv.cancel()
	var err error
	if ln != nil {
		err = ln.Close()
	}
	srv.wg.Wait()
	if ln != nil {
		if rerr := os.Remove(srv.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	return err
}

func (srv *Server) serve(ln net.Listener) {
	defer srv.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			srv.Logger.Error("control: accept", "err", err.Error())
			time.Sleep(100 * time.Millisecond)
			continue
		}
		srv.mu.Lock()
		if srv.ln == nil {
			srv.mu.Unlock()
			c.Close()
			return
		}
		srv.conns[c] = struct{}{}
		srv.wg.Add(1)
		srv.mu.Unlock()
		go func() {
			defer srv.wg.Done()
			srv.handle(c)
			srv.mu.Lock()
			delete(srv.conns, c)
			srv.mu.Unlock()
			c.Close()
		}()
	}
}

func (srv *Server) handle(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	wt := srv.WriteTimeout
	if wt <= 0 {
		wt = time.Hour
	}
	rw := &replyWriter{w: bufio.NewWriterSize(deadlineWriter{c, wt}, maxChunk+64)}
	req, err := ParseRequest(bufio.NewReaderSize(c, 4096))
	if err != nil {
		if errors.Is(err, errProtocol) {
			rw.fail(KindBadRequest, err.Error())
		}
		return
	}
	c.SetReadDeadline(time.Time{})
	n, err := srv.do(srv.ctx, req, rw)
	if err != nil {
		kind := KindFailed
		var ce *Error
		switch {
		case errors.As(err, &ce):
			kind = ce.Kind
		case errors.Is(err, queue.ErrNotFound) || errors.Is(err, queue.ErrBadID):
			kind = KindNotFound
		case errors.Is(err, queue.ErrNotRunning):
			kind = KindUnavailable
		}
		rw.fail(kind, err.Error())
		return
	}
	rw.ok(n)
}

// deadlineWriter gives each write to the client its own deadline.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.c.Write(p)
}

// replyOut is where a request's output and warnings go.
type replyOut interface {
	Write(p []byte) (int, error)
	warning(msg string)
}

// do performs one request, writing its output to out. It returns the
// count of the reply's "ok" record.
func (srv *Server) do(ctx context.Context, req *Request, out replyOut) (int, error) {
	noSched := &Error{Kind: KindUnavailable, Msg: "no scheduler runs on this queue"}
	switch req.Verb {
	case VerbMailq:
		return 0, srv.q.Mailq(ctx, out)
	case VerbMailqJSON:
		return 0, srv.q.MailqJSON(ctx, out)
	case VerbPostcat:
		return 0, srv.q.Postcat(ctx, out, req.Arg, req.Postcat)
	case VerbFlush:
		if srv.s == nil {
			return 0, noSched
		}
		return 0, srv.s.FlushAll(ctx)
	case VerbFlushSite:
		if srv.s == nil {
			return 0, noSched
		}
		return srv.s.FlushSite(ctx, req.Arg)
	case VerbDeliver:
		if srv.s == nil {
			return 0, noSched
		}
		return 0, srv.s.DeliverNow(ctx, req.Arg)
	}
	if op := req.Op(); op != 0 {
		ids := req.IDs
		if req.All {
			ids = nil
		} else if ids == nil {
			ids = []string{}
		}
		var done []string
		var err error
		if srv.s != nil {
			done, err = srv.s.Admin(ctx, op, ids, req.States)
		} else {
			done, err = srv.q.Admin(ctx, op, ids, req.States)
		}
		// The IDs acted on, one per line: postsuper names them when
		// they were named to it.
		for _, id := range done {
			if _, werr := io.WriteString(out, id+"\n"); werr != nil && err == nil {
				err = werr
			}
		}
		return len(done), err
	}
	return 0, &Error{Kind: KindBadRequest, Msg: fmt.Sprintf("unknown verb %q", req.Verb)}
}

// listenUnix binds the socket in a private directory beside path (mode
// 0700), sets its mode, and only then renames it into place, so that no
// one can connect while it has the permissions the umask gave it.
func listenUnix(path string, mode fs.FileMode) (*net.UnixListener, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".c")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	p := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // Close removes the final path
	if err := os.Chmod(p, mode); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(p, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
