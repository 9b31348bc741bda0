package pickup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/maildate"
)

// Config configures a Service.
type Config struct {
	// Dir is the maildrop directory ($queue_directory/maildrop).
	Dir string
	// PollInterval is how often the directory is scanned without a
	// wake-up; Postfix's master wakes pickup every 60 seconds
	// (master.cf "pickup unix n - y 60 1 pickup"). Zero means 60s.
	PollInterval time.Duration
	// RetryDelay is how long a file that hit a temporary error (cleanup
	// or its store failed, a 4xx from cleanup) waits before the next
	// attempt, so that a broken store is not hammered. Zero means
	// PollInterval.
	RetryDelay time.Duration
	// Hostname and MailName go into the Received: header pickup adds to
	// a message read by sendmail: myhostname and mail_name ("Postfix").
	Hostname string
	MailName string
	// Location is the time zone of the Received: date; nil means
	// time.Local, as Postfix uses the local time zone.
	Location *time.Location
	Logger   *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service feeds the maildrop to cleanup: Postfix's pickup(8).
type Service struct {
	cfg   Config
	open  func(ctx context.Context, in *cleanup.Input) (message, error)
	log   *slog.Logger
	mu    sync.Mutex
	retry map[string]time.Time // file name -> not before
	// scanning makes scans one at a time: two scans feeding the same
	// file would queue it twice.
	scanning sync.Mutex
}

// message is what the service needs of a cleanup.Message.
type message interface {
	ID() string
	io.Writer
	Commit(ctx context.Context) error
	Abort() error
}

// New returns a service that feeds the messages in cfg.Dir to c.
func New(cfg Config, c *cleanup.Cleanup) (*Service, error) {
	if c == nil {
		return nil, errors.New("pickup: no cleanup")
	}
	return newService(cfg, func(ctx context.Context, in *cleanup.Input) (message, error) {
		m, err := c.Open(ctx, in)
		if err != nil {
			return nil, err
		}
		return m, nil
	})
}

func newService(cfg Config, open func(ctx context.Context, in *cleanup.Input) (message, error)) (*Service, error) {
	if cfg.Dir == "" {
		return nil, errors.New("pickup: no maildrop directory")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 60 * time.Second
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = cfg.PollInterval
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("pickup: no Hostname and %w", err)
		}
		cfg.Hostname = h
	}
	if cfg.MailName == "" {
		cfg.MailName = "Postfix"
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, open: open, log: log, retry: map[string]time.Time{}}, nil
}

// ConfigFrom reads the service's settings from main.cf: the maildrop
// directory under queue_directory, myhostname and mail_name.
func ConfigFrom(cfg *config.Config) (Config, error) {
	var out Config
	qd, _, err := cfg.Lookup("queue_directory")
	if err != nil {
		return out, fmt.Errorf("pickup: %w", err)
	}
	out.Dir = filepath.Join(qd, "maildrop")
	if out.Hostname, _, err = cfg.Lookup("myhostname"); err != nil {
		return out, fmt.Errorf("pickup: %w", err)
	}
	if out.MailName, _, err = cfg.Lookup("mail_name"); err != nil {
		return out, fmt.Errorf("pickup: %w", err)
	}
	return out, nil
}

// FromConfig is New with ConfigFrom's settings and a logger.
func FromConfig(cfg *config.Config, c *cleanup.Cleanup, log *slog.Logger) (*Service, error) {
	pc, err := ConfigFrom(cfg)
	if err != nil {
		return nil, err
	}
	pc.Logger = log
	return New(pc, c)
}

// Run watches the maildrop until ctx ends: a scan at start, then one
// after every wake-up datagram on Dir/.pickup and every PollInterval. It
// returns ctx's error, or an error when Dir is not a postkit maildrop
// (Check) or another service already listens on the wake-up socket. If the socket cannot be made for another reason
// it logs a warning and only polls.
func (s *Service) Run(ctx context.Context) error {
	if err := Check(s.cfg.Dir); err != nil {
		return err
	}
	sock := filepath.Join(s.cfg.Dir, WakeupSocket)
	addr := &net.UnixAddr{Name: sock, Net: "unixgram"}
	pc, err := net.ListenUnixgram("unixgram", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		// A socket file is there. If nobody is bound to it (a service
		// that crashed), connecting is refused and it is stale.
		if c, derr := net.Dial("unixgram", sock); derr == nil {
			c.Close()
			return fmt.Errorf("pickup: another service listens on %s", sock)
		}
		os.Remove(sock)
		pc, err = net.ListenUnixgram("unixgram", addr)
	}
	wake := make(chan struct{}, 1)
	if err != nil {
		// Without the socket (a path longer than a socket address may
		// be, a read-only directory) submissions wait for the poll.
		s.log.Warn(fmt.Sprintf("warning: pickup: no wake-up socket, polling every %v: %v", s.cfg.PollInterval, err))
	} else {
		defer os.Remove(sock)
		defer pc.Close()
		// Any local user who may submit may poke: the datagram carries
		// nothing that is trusted, it only shortens the wait.
		os.Chmod(sock, 0o666)
		go func() {
			buf := make([]byte, 16)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}()
		go func() {
			<-ctx.Done()
			pc.Close()
		}()
	}

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-timer.C:
		}
		if _, err := s.Scan(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("warning: maildrop scan: "+err.Error(), slog.String("dir", s.cfg.Dir))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(s.nextWait())
	}
}

// nextWait is the poll interval, or less when a file is due for retry
// before that.
func (s *Service) nextWait() time.Duration {
	wait := s.cfg.PollInterval
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.retry {
		if d := t.Sub(now); d < wait {
			wait = max(d, 10*time.Millisecond)
		}
	}
	return wait
}

// Scan feeds every maildrop file present now to cleanup, oldest first,
// and returns how many were queued. Files that fail temporarily stay for
// a later scan; corrupt and rejected files are moved aside. The error is
// for the directory itself (unreadable) or the context.
func (s *Service) Scan(ctx context.Context) (int, error) {
	s.scanning.Lock()
	defer s.scanning.Unlock()
	if err := Check(s.cfg.Dir); err != nil {
		return 0, err
	}
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return 0, fmt.Errorf("pickup: read maildrop %s: %w", s.cfg.Dir, err)
	}
	now := s.cfg.Now()
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if validName(e.Name()) {
			names = append(names, e.Name())
		} else if strings.HasPrefix(e.Name(), tmpPrefix) {
			s.removeStale(e, now)
		}
	}
	// Names start with the arrival time in hex: oldest first.
	sort.Strings(names)
	queued := 0
	present := map[string]bool{}
	for _, name := range names {
		present[name] = true
		if err := ctx.Err(); err != nil {
			return queued, err
		}
		s.mu.Lock()
		notBefore, waiting := s.retry[name]
		s.mu.Unlock()
		if waiting && now.Before(notBefore) {
			continue
		}
		switch err := s.process(ctx, name); {
		case err == nil:
			queued++
			s.mu.Lock()
			delete(s.retry, name)
			s.mu.Unlock()
		case errors.Is(err, errTemporary):
			s.mu.Lock()
			s.retry[name] = s.cfg.Now().Add(s.cfg.RetryDelay)
			s.mu.Unlock()
		default:
			s.mu.Lock()
			delete(s.retry, name)
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	for name := range s.retry {
		if !present[name] {
			delete(s.retry, name)
		}
	}
	s.mu.Unlock()
	return queued, nil
}

// staleAge is how old an unfinished submission must be before a scan
// removes it: a sendmail that died before its Commit leaves one behind.
const staleAge = 24 * time.Hour

func (s *Service) removeStale(e fs.DirEntry, now time.Time) {
	fi, err := e.Info()
	if err != nil || now.Sub(fi.ModTime()) < staleAge {
		return
	}
	if err := os.Remove(filepath.Join(s.cfg.Dir, e.Name())); err == nil {
		s.log.Warn(fmt.Sprintf("warning: maildrop: removed unfinished submission %s from %s", e.Name(), fi.ModTime().Format(time.RFC3339)))
	}
}

// errTemporary marks a failure after which the file stays for a retry.
var errTemporary = errors.New("temporary failure")

// errMovedAside marks a file moved to corrupt/ or rejected/.
var errMovedAside = errors.New("moved aside")

// process feeds one file to cleanup. It returns nil once the message is
// queued and the file removed.
func (s *Service) process(ctx context.Context, name string) error {
	path := filepath.Join(s.cfg.Dir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errMovedAside // gone meanwhile: nothing to do
		}
		if errors.Is(err, syscall.ELOOP) {
			return s.moveAside(name, CorruptDir, "a symbolic link, not a file")
		}
		s.log.Warn(fmt.Sprintf("warning: open maildrop file %s: %v", name, err))
		return errTemporary
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.log.Warn(fmt.Sprintf("warning: stat maildrop file %s: %v", name, err))
		return errTemporary
	}
	if !fi.Mode().IsRegular() {
		return s.moveAside(name, CorruptDir, "not a regular file")
	}
	env, content, err := Decode(f, fi.Size())
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return s.moveAside(name, CorruptDir, err.Error())
		}
		s.log.Warn(fmt.Sprintf("warning: read maildrop file %s: %v", name, err))
		return errTemporary
	}
	// The file's owner is who submitted it: a user can write any uid
	// into the envelope, but not chown a file to someone else.
	uid := fileOwner(fi)
	if uid < 0 {
		uid = env.UID
	} else if uid != env.UID {
		s.log.Warn(fmt.Sprintf("warning: maildrop file %s: envelope says uid %d, file owner is uid %d; using the owner", name, env.UID, uid))
	}

	in := &cleanup.Input{
		Sender:            env.Sender,
		FullName:          env.FullName,
		ExtractRecipients: env.ExtractRecipients,
		Local:             env.Local,
		Body:              env.Body,
		Ret:               env.Ret,
		EnvID:             env.EnvID,
		SMTPUTF8:          env.SMTPUTF8,
		Arrival:           env.Arrival,
		// Postfix's cleanup logs a picked-up message as "from local",
		// without protocol or HELO, even after sendmail -bs; the file
		// keeps them (Proto, Helo) for the record only.
		Client: cleanup.ClientInfo{Name: "localhost", Addr: "127.0.0.1"},
	}
	for _, r := range env.Recipients {
		in.Recipients = append(in.Recipients, cleanup.Recipient{Addr: r.Addr, Notify: r.Notify})
	}
	m, err := s.open(ctx, in)
	if err != nil {
		s.log.Warn(fmt.Sprintf("warning: maildrop file %s: cleanup: %v", name, err))
		return errTemporary
	}
	id := m.ID()
	// Postfix's pickup logs this before cleanup reads the content.
	s.log.Info(fmt.Sprintf("%s: uid=%d from=<%s>", id, uid, env.Sender),
		slog.String("queue_id", id), slog.String("maildrop_file", name))
	// Postfix's pickup adds this to every message, on top of the one an
	// SMTP session (sendmail -bs) wrote. The queue ID is cleanup's, the
	// date the submission's.
	rcvd := fmt.Sprintf("Received: by %s (%s, from userid %d)\r\n\tid %s; %s\r\n",
		s.cfg.Hostname, s.cfg.MailName, uid, id, maildate.Format(env.Arrival.In(s.cfg.Location)))
	if _, err := io.WriteString(m, rcvd); err != nil {
		m.Abort()
		s.log.Warn(fmt.Sprintf("warning: %s: maildrop file %s: write to cleanup: %v", id, name, err), slog.String("queue_id", id))
		return errTemporary
	}
	if _, err := io.Copy(m, content); err != nil {
		m.Abort()
		s.log.Warn(fmt.Sprintf("warning: %s: maildrop file %s: copy to cleanup: %v", id, name, err), slog.String("queue_id", id))
		return errTemporary
	}
	if err := m.Commit(ctx); err != nil {
		var rej *cleanup.RejectError
		if errors.As(err, &rej) && !rej.Reply.Temporary() {
			// Postfix's pickup has cleanup bounce the message to the
			// sender; without a bounce service yet, the file is kept
			// for the administrator.
			return s.moveAside(name, RejectedDir, "rejected: "+rej.Reply.String())
		}
		s.log.Warn(fmt.Sprintf("warning: %s: maildrop file %s: not queued, will retry: %v", id, name, err), slog.String("queue_id", id))
		return errTemporary
	}
	// Queued: only now may the submission go. If the removal fails the
	// message would be queued twice on the next scan; say so loudly.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error(fmt.Sprintf("error: %s: queued, but cannot remove maildrop file %s: %v", id, name, err), slog.String("queue_id", id))
		return nil
	}
	if err := syncDir(s.cfg.Dir); err != nil {
		s.log.Warn(fmt.Sprintf("warning: %s: %v", id, err), slog.String("queue_id", id))
	}
	return nil
}

// moveAside moves a file into a subdirectory and logs why. A file is never
// deleted unread.
func (s *Service) moveAside(name, sub, reason string) error {
	from := filepath.Join(s.cfg.Dir, name)
	to := filepath.Join(s.cfg.Dir, sub, name)
	if err := os.MkdirAll(filepath.Join(s.cfg.Dir, sub), 0o700); err != nil {
		s.log.Error(fmt.Sprintf("error: maildrop file %s: %s; cannot create %s/: %v", name, reason, sub, err))
		return errTemporary
	}
	if err := os.Rename(from, to); err != nil {
		s.log.Error(fmt.Sprintf("error: maildrop file %s: %s; cannot move it to %s/: %v", name, reason, sub, err))
		return errTemporary
	}
	syncDir(s.cfg.Dir)
	s.log.Warn(fmt.Sprintf("warning: maildrop file %s: %s; moved to %s/%s", name, reason, sub, name),
		slog.String("maildrop_file", name))
	return errMovedAside
}
