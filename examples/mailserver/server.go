package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/bounce"
	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/imapserver"
	"github.com/postkit-mail/postkit/pop3server"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/queue/control"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
)

// options are the command-line flags.
type options struct {
	configDir, dataDir string
	smtp, submission   string
	submissions        string
	imap, imaps        string
	pop3, pop3s        string
	logFile            string
	drainTimeout       time.Duration
}

// server is the running mail system: SMTP listeners, cleanup, the queue
// and its scheduler, the delivery agents. The parts built from the
// configuration sit behind atomic pointers so SIGHUP can replace them
// while mail flows.
type server struct {
	opts options
	out  io.Writer // start-up report (addresses, the new user's password)
	ml   *maillog
	log  *slog.Logger // postfix/master

	q     *queue.Queue
	sched *queue.Scheduler
	ctl   *control.Server

	gen atomic.Pointer[generation]
	// agents maps the queue IDs being delivered to the master.cf command
	// of their transport, for the program name of the delivery log
	// lines, until the "removed" line.
	agents    sync.Map
	listeners []*listener

	mu      sync.Mutex
	servers []*smtpserver.Server // every SMTP server built, for the drain

	// Mail access (access.go), built once; nil when its listeners are off.
	imap     *imapserver.Server
	pop3     *pop3server.Server
	accessWG sync.WaitGroup
}

// generation is what one reading of the configuration builds.
type generation struct {
	cfg     *config.Config
	cleanup *cleanup.Cleanup
	smtp    map[smtpserver.Role]*smtpserver.Server
	router  queue.Router
	deliver queue.Deliverer
	// commands maps transport names to master.cf commands (agent kinds).
	commands map[string]string
	notify   queue.Notifier
	close    func()
	// For IMAP and POP3: the users, the certificate (nil when their
	// listeners are off) and home_mailbox (where the local agent delivers).
	users       *auth.PasswdFile
	accessTLS   *tls.Config
	homeMailbox string
}

type listener struct {
	role smtpserver.Role
	name string
	ln   net.Listener
}

var roleNames = map[smtpserver.Role]string{
	smtpserver.RoleSMTP: "smtp", smtpserver.RoleSubmission: "submission", smtpserver.RoleSubmissions: "submissions",
}

// start builds everything and starts listening; the addresses actually
// bound (useful with port 0) are printed to out.
func start(opts options, out io.Writer, logw io.Writer) (*server, error) {
	dataDir, err := filepath.Abs(opts.dataDir)
	if err != nil {
		return nil, err
	}
	opts.dataDir = dataDir
	s := &server{opts: opts, out: out, ml: newMaillog(logw)}
	s.log = s.ml.logger("master")
	cfg, masterCF, err := loadConfig(opts.configDir, dataDir)
	if err != nil {
		return nil, err
	}
	if err := firstStart(dataDir, cfg.Get("smtpd_tls_cert_file"), cfg.Get("smtpd_tls_key_file"), out); err != nil {
		return nil, fmt.Errorf("preparing %s: %w", dataDir, err)
	}
	s.q, err = queue.Open(filepath.Join(dataDir, "queue"), queue.Options{Logger: s.ml.logger("postsuper")})
	if err != nil {
		return nil, err
	}
	g, err := s.build(cfg, masterCF)
	if err != nil {
		s.q.Close()
		return nil, err
	}
	s.gen.Store(g)
	sc, err := queue.SchedulerConfigFromMain(cfg, "local", "virtual", "smtp", "relay", "lmtp")
	if err != nil {
		s.q.Close()
		return nil, err
	}
	sc.Deliverer = queue.DelivererFunc(func(ctx context.Context, d *queue.Delivery) []queue.Result {
		g := s.gen.Load()
		s.agents.Store(d.QueueID, g.commands[d.Transport])
		return g.deliver.Deliver(ctx, d)
	})
	sc.Router = queue.RouterFunc(func(ctx context.Context, env *cleanup.Envelope, rcpt string) (queue.Route, error) {
		return s.gen.Load().router.Route(ctx, env, rcpt)
	})
	sc.Notifier = queue.NotifierFunc(func(ctx context.Context, n *queue.Notice) error {
		return s.gen.Load().notify.Notify(ctx, n)
	})
	sc.Logger = s.ml.schedulerLogger(func(id string) string {
		a, _ := s.agents.Load(id)
		agent, _ := a.(string)
		return agent
	}, func(id string) { s.agents.Delete(id) })
	if s.sched, err = queue.NewScheduler(s.q, sc); err != nil {
		s.q.Close()
		return nil, err
	}
	s.sched.Start()
	if err := s.startControl(); err != nil {
		s.stop(context.Background())
		return nil, err
	}
	for _, l := range []struct {
		role smtpserver.Role
		addr string
	}{{smtpserver.RoleSMTP, opts.smtp}, {smtpserver.RoleSubmission, opts.submission}, {smtpserver.RoleSubmissions, opts.submissions}} {
		if l.addr == "" {
			continue
		}
		if err := s.listen(cfg, l.role, l.addr); err != nil {
			s.stop(context.Background())
			return nil, err
		}
	}
	if err := s.startAccess(); err != nil {
		s.stop(context.Background())
		return nil, err
	}
	s.log.Info(fmt.Sprintf("daemon started -- version postkit, configuration %s", configName(opts.configDir)))
	return s, nil
}

func configName(dir string) string {
	if dir == "" {
		return "(built-in)"
	}
	return dir
}

// build reads what the configuration decides: restrictions and tables
// (through the SMTP servers), cleanup, routing and the delivery agents.
func (s *server) build(cfg *config.Config, masterCF string) (*generation, error) {
	ctx := context.Background()
	g := &generation{cfg: cfg, smtp: map[smtpserver.Role]*smtpserver.Server{}}
	cl, err := cleanup.FromConfig(ctx, cfg, s.q)
	if err != nil {
		return nil, err
	}
	cc := cl.Config()
	cc.Logger = s.ml.logger("cleanup")
	if cl, err = cleanup.New(cc, s.q); err != nil {
		return nil, err
	}
	g.cleanup = cl
	users, err := auth.OpenPasswdFile(filepath.Join(s.opts.dataDir, passwdFile), auth.PasswdFileOptions{Logger: s.ml.logger("auth")})
	if err != nil {
		return nil, err
	}
	g.users, g.homeMailbox = users, cfg.Get("home_mailbox")
	if s.opts.accessOn() {
		if g.accessTLS, err = accessTLSConfig(cfg); err != nil {
			return nil, err
		}
	}
	authn := &auth.Authenticator{PassDB: users, UserDB: users, Logger: s.ml.logger("smtpd")}
	restrictionLog := s.ml.warnings("smtpd")
	for role, addr := range map[smtpserver.Role]string{smtpserver.RoleSMTP: s.opts.smtp,
		smtpserver.RoleSubmission: s.opts.submission, smtpserver.RoleSubmissions: s.opts.submissions} {
		if addr == "" {
			continue // that listener is off
		}
		sc, err := smtpserver.ConfigFrom(ctx, cfg, role, restrictions.Options{Logger: restrictionLog})
		if err != nil {
			return nil, err
		}
		sc.Handoff = cl.Handoff()
		sc.Logger = s.ml.logger(roleLogName(role))
		if enabled, _ := cfg.Bool("smtpd_sasl_auth_enable"); enabled || role != smtpserver.RoleSMTP {
			sasl, err := smtpserver.SASLFrom(cfg, authn)
			if err != nil {
				return nil, err
			}
			sc.Auth = sasl
		}
		srv, err := smtpserver.New(sc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", roleNames[role], err)
		}
		g.smtp[role] = srv
	}
	bs, err := bounce.FromConfig(cfg)
	if err != nil {
		return nil, err
	}
	nf := bounce.NewNotifier(bs, bounce.NewCleanupSubmitter(cl))
	nf.Logger = s.ml.logger("bounce")
	g.notify = nf
	if err := s.buildDelivery(ctx, g, users, masterCF); err != nil {
		return nil, err
	}
	s.mu.Lock()
	for _, srv := range g.smtp {
		s.servers = append(s.servers, srv)
	}
	s.mu.Unlock()
	return g, nil
}

// roleLogName is the program name Debian's master.cf gives each smtpd:
// submission and submissions log as postfix/submission/smtpd, which
// pflogsumm understands.
func roleLogName(r smtpserver.Role) string {
	switch r {
	case smtpserver.RoleSubmission:
		return "submission/smtpd"
	case smtpserver.RoleSubmissions:
		return "smtps/smtpd"
	}
	return "smtpd"
}

func (s *server) listen(cfg *config.Config, role smtpserver.Role, addr string) error {
	inner, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", roleNames[role], err)
	}
	lc, err := smtpserver.ListenerConfigFrom(cfg)
	if err != nil {
		inner.Close()
		return err
	}
	lc.Service = roleNames[role]
	lc.Logger = s.ml.logger(roleLogName(role))
	ln, err := smtpserver.NewListener(inner, lc)
	if err != nil {
		inner.Close()
		return err
	}
	l := &listener{role: role, name: roleNames[role], ln: ln}
	s.listeners = append(s.listeners, l)
	fmt.Fprintf(s.out, "listening %s %s\n", l.name, inner.Addr())
	go s.accept(l)
	return nil
}

// accept hands each connection to the current generation's server for
// the listener's role, so a reload applies to new connections while the
// sessions already open finish with the configuration they started with.
func (s *server) accept(l *listener) {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A temporary failure (out of file descriptors...): back off.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn(fmt.Sprintf("accept on %s: %v", l.name, err))
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.gen.Load().smtp[l.role].ServeConn(c)
	}
}

// reload (SIGHUP) rereads main.cf, master.cf, the passwd-file and every
// table they name, builds a new generation and swaps it in: the SMTP
// servers (restrictions and their tables, TLS certificate and settings,
// SASL), cleanup (header and body checks, canonical and virtual alias
// maps), routing (transport_maps, relayhost, the address classes), the
// bounce settings and the delivery agents; for IMAP and POP3, the users
// and the certificate (new logins and TLS handshakes use them) and
// home_mailbox. New connections and deliveries use it; sessions already
// open finish with the old one (IMAP and POP3 sessions keep running). Not
// reloaded: the listen addresses (flags), the IMAP and POP3 servers'
// limits, the queue and the scheduler's limits (queue_run_delay, backoff
// times, concurrency), which take effect at the next start. A configuration that does not build is logged and
// the running one kept.
func (s *server) reload() error {
	cfg, masterCF, err := loadConfig(s.opts.configDir, s.opts.dataDir)
	if err != nil {
		return err
	}
	if err := writeRecipients(s.opts.dataDir); err != nil {
		return err
	}
	g, err := s.build(cfg, masterCF)
	if err != nil {
		return err
	}
	old := s.gen.Swap(g)
	if old.close != nil {
		// Deliveries in flight may still use the old agents: close them
		// once they have had time to finish.
		time.AfterFunc(time.Minute, old.close)
	}
	s.log.Info(fmt.Sprintf("reload -- version postkit, configuration %s", configName(s.opts.configDir)))
	return nil
}

// stop drains: no new connections, IMAP and POP3 sessions are cut after
// a second's grace (see stopAccess), the SMTP sessions end (each is asked
// to finish; after the timeout they are cut), the scheduler lets running
// deliveries finish (the rest stays queued for the next start), then the
// queue is closed.
func (s *server) stop(ctx context.Context) error {
	s.mu.Lock()
	servers := append([]*smtpserver.Server(nil), s.servers...)
	s.mu.Unlock()
	for _, l := range s.listeners {
		l.ln.Close()
	}
	s.stopAccess(ctx)
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
			errs = append(errs, fmt.Errorf("smtp sessions: %w", err))
		}
	}
	if s.sched != nil {
		if err := s.sched.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("scheduler: %w", err))
		}
	}
	s.stopControl()
	if g := s.gen.Load(); g != nil && g.close != nil {
		g.close()
	}
	if err := s.q.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// openLog opens the -log file for appending ("" means stderr).
func openLog(path string) (io.Writer, func(), error) {
	if path == "" {
		return os.Stderr, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}
