package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
)

// SchedulerConfig configures a Scheduler. Zero fields take Postfix 3.7's
// defaults (postconf -d), named beside each.
type SchedulerConfig struct {
	// Deliverer delivers; required.
	Deliverer Deliverer
	// Router maps recipients to destinations; nil means
	// DomainRouter("smtp").
	Router Router
	// Notifier receives the DSNs due; nil drops them (logged).
	Notifier Notifier
	// Clock gives the time; nil means the Queue's clock.
	Clock Clock
	// Logger receives the maillog lines; nil means slog.Default().
	Logger *slog.Logger

	QueueRunDelay      time.Duration // queue_run_delay, 300s
	MinimalBackoff     time.Duration // minimal_backoff_time, 300s
	MaximalBackoff     time.Duration // maximal_backoff_time, 4000s
	MaxQueueLifetime   time.Duration // maximal_queue_lifetime, 5d; negative: 0 (one attempt)
	BounceLifetime     time.Duration // bounce_queue_lifetime, 5d; negative: 0
	DelayWarning       time.Duration // delay_warning_time, 0 (off)
	MessageActiveLimit int           // qmgr_message_active_limit, 20000
	// ProcessLimit caps deliveries in flight over all destinations
	// (default_process_limit, 100).
	ProcessLimit       int
	InitialConcurrency int     // initial_destination_concurrency, 5
	ConcurrencyLimit   int     // default_destination_concurrency_limit, 20
	RecipientLimit     int     // default_destination_recipient_limit, 50
	FailedCohortLimit  float64 // default_destination_concurrency_failed_cohort_limit, 1
	// Transports overrides the limits per transport name
	// (transport_destination_concurrency_limit,
	// transport_destination_recipient_limit).
	Transports map[string]TransportLimits
	// Poll is how often the scheduler looks at the clock for due scans
	// and revived destinations; 0 means one second.
	Poll time.Duration
}

// TransportLimits are one transport's overrides; zero fields use the
// defaults.
type TransportLimits struct {
	ConcurrencyLimit int
	RecipientLimit   int
}

func (c *SchedulerConfig) fill(q *Queue) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		} else if *d < 0 {
			*d = 0
		}
	}
	def(&c.QueueRunDelay, 300*time.Second)
	def(&c.MinimalBackoff, 300*time.Second)
	def(&c.MaximalBackoff, 4000*time.Second)
	def(&c.MaxQueueLifetime, 5*24*time.Hour)
	def(&c.BounceLifetime, 5*24*time.Hour)
	if c.DelayWarning < 0 {
		c.DelayWarning = 0
	}
	defi := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	defi(&c.MessageActiveLimit, 20000)
	defi(&c.ProcessLimit, 100)
	defi(&c.InitialConcurrency, 5)
	defi(&c.ConcurrencyLimit, 20)
	defi(&c.RecipientLimit, 50)
	if c.FailedCohortLimit <= 0 {
		c.FailedCohortLimit = 1
	}
	if c.Router == nil {
		c.Router = DomainRouter("smtp")
	}
	if c.Clock == nil {
		c.Clock = q.clock
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
}

func (c *SchedulerConfig) limits(transport string) (conc, rcpt int) {
	conc, rcpt = c.ConcurrencyLimit, c.RecipientLimit
	if t, ok := c.Transports[transport]; ok {
		if t.ConcurrencyLimit > 0 {
			conc = t.ConcurrencyLimit
		}
		if t.RecipientLimit > 0 {
			rcpt = t.RecipientLimit
		}
	}
	return conc, rcpt
}

// SchedulerConfigFromMain reads the scheduler's parameters from main.cf.
// The per-transport limits are read for the transports named and for
// every transport_destination_{concurrency,recipient}_limit set in
// main.cf; Postfix's own defaults for local (2 and 1) come with it.
func SchedulerConfigFromMain(cfg *config.Config, transports ...string) (SchedulerConfig, error) {
	r := config.NewReader(cfg)
	c := SchedulerConfig{
		QueueRunDelay:      r.Duration("queue_run_delay"),
		MinimalBackoff:     r.Duration("minimal_backoff_time"),
		MaximalBackoff:     r.Duration("maximal_backoff_time"),
		MaxQueueLifetime:   r.Duration("maximal_queue_lifetime"),
		BounceLifetime:     r.Duration("bounce_queue_lifetime"),
		DelayWarning:       r.Duration("delay_warning_time"),
		MessageActiveLimit: r.Int("qmgr_message_active_limit"),
		ProcessLimit:       r.Int("default_process_limit"),
		InitialConcurrency: r.Int("initial_destination_concurrency"),
		ConcurrencyLimit:   r.Int("default_destination_concurrency_limit"),
		RecipientLimit:     r.Int("default_destination_recipient_limit"),
		FailedCohortLimit:  float64(r.Int("default_destination_concurrency_failed_cohort_limit")),
		Transports:         map[string]TransportLimits{},
	}
	// A lifetime of 0 means one attempt; the zero value of the struct
	// means "default", so carry it as negative.
	for _, d := range []*time.Duration{&c.MaxQueueLifetime, &c.BounceLifetime} {
		if *d == 0 {
			*d = -1
		}
	}
	names := append([]string{"smtp", "lmtp", "local", "virtual", "relay"}, transports...)
	for _, n := range cfg.Names() {
		for _, suf := range []string{"_destination_concurrency_limit", "_destination_recipient_limit"} {
			if t, ok := strings.CutSuffix(n, suf); ok && t != "default" {
				names = append(names, t)
			}
		}
	}
	for _, t := range names {
		var tl TransportLimits
		if v, ok, err := cfg.Lookup(t + "_destination_concurrency_limit"); err == nil && ok && v != "" {
			tl.ConcurrencyLimit = r.Int(t + "_destination_concurrency_limit")
		} else {
			r.Keep(err)
		}
		if v, ok, err := cfg.Lookup(t + "_destination_recipient_limit"); err == nil && ok && v != "" {
			tl.RecipientLimit = r.Int(t + "_destination_recipient_limit")
		} else {
			r.Keep(err)
		}
		if tl != (TransportLimits{}) {
			c.Transports[t] = tl
		}
	}
	if err := r.Err(); err != nil {
		return c, fmt.Errorf("queue: reading the scheduler's parameters: %w", err)
	}
	return c, nil
}

// FromConfig builds a Scheduler for q from main.cf, delivering through d
// and routing through rt.
func FromConfig(cfg *config.Config, q *Queue, d Deliverer, rt Router, n Notifier) (*Scheduler, error) {
	c, err := SchedulerConfigFromMain(cfg)
	if err != nil {
		return nil, err
	}
	c.Deliverer, c.Router, c.Notifier = d, rt, n
	return NewScheduler(q, c)
}

// Scheduler is Postfix's queue manager (qmgr) over a Queue: it takes new
// mail from incoming and due mail from deferred, moves it to active,
// hands recipient batches to the Deliverer per destination with slow-start
// concurrency and round-robin fairness, records every recipient's status
// in the queue file, and then removes the message or defers it with the
// backoff of spec §7.4, expiring it after maximal_queue_lifetime. Held
// messages are never looked at.
type Scheduler struct {
	q   *Queue
	cfg SchedulerConfig
	log *slog.Logger

	wake     chan struct{}
	results  chan *job
	finished chan *activeMsg
	syncReq  chan chan struct{}
	flushReq chan struct{}
	stopReq  chan struct{}
	loopDone chan struct{}

	// Delivery contexts end on a hard stop.
	dctx    context.Context
	dcancel context.CancelFunc
	workers sync.WaitGroup

	startOnce, stopOnce sync.Once

	// Owned by the loop goroutine.
	msgs      map[string]*activeMsg
	dests     map[destKey]*dest
	ring      []*dest // destinations with queued jobs, in round-robin order
	ringPos   int
	inFlight  int
	finishing int
	waiters   []chan struct{}
	backlog   []Entry // scanned, not yet taken into active
	nextInc   time.Time
	nextDef   time.Time
	incDirty  bool
	flushAll  bool
	stopping  bool
	ctl       schedControl // admin operations (control.go)
}

// NewScheduler returns a scheduler for q; Start runs it.
func NewScheduler(q *Queue, cfg SchedulerConfig) (*Scheduler, error) {
	if cfg.Deliverer == nil {
		return nil, errors.New("queue: a scheduler needs a Deliverer")
	}
	cfg.fill(q)
	s := &Scheduler{q: q, cfg: cfg, log: cfg.Logger,
		wake: make(chan struct{}, 1), results: make(chan *job, 64), finished: make(chan *activeMsg, 64),
		syncReq: make(chan chan struct{}), flushReq: make(chan struct{}, 1), stopReq: make(chan struct{}),
		loopDone: make(chan struct{}), msgs: map[string]*activeMsg{}, dests: map[destKey]*dest{}}
	s.dctx, s.dcancel = context.WithCancel(context.Background())
	s.ctl.init()
	return s, nil
}

// Start starts the scheduler and hooks it to q's commits so new mail is
// seen at once. Messages left in active by an earlier run went back to
// incoming at Open and are taken up again.
func (s *Scheduler) Start() {
	s.startOnce.Do(func() {
		s.q.OnCommit(func(string) { s.Wake() })
		s.incDirty = true
		s.ctl.started.Store(true)
		go s.loop()
	})
}

// Wake asks for an incoming scan now (cleanup committed a message).
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Flush makes every deferred message due now (postqueue -f).
func (s *Scheduler) Flush() {
	select {
	case s.flushReq <- struct{}{}:
	default:
	}
}

// Sync looks at the queue now (the scans that are due by the clock, and
// incoming) and waits until every message taken into active is done:
// delivered, deferred or bounced. Tests drive a FakeClock with Advance
// and Sync.
func (s *Scheduler) Sync(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case s.syncReq <- ch:
	case <-s.loopDone:
		return errors.New("queue: scheduler stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop stops taking new work and waits for the deliveries in flight and
// the messages being finished. If ctx ends first, the deliveries' context
// is cancelled and Stop still waits for them to return. Messages in active
// that were not finished go back to incoming, with the statuses already
// recorded, so only their remaining recipients are tried again.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.startOnce.Do(func() { close(s.loopDone) }) // never started: nothing to wait for
	s.stopOnce.Do(func() { close(s.stopReq) })
	s.q.OnCommit(nil)
	var err error
	select {
	case <-s.loopDone:
	case <-ctx.Done():
		err = ctx.Err()
		s.dcancel()
		<-s.loopDone
	}
	s.dcancel()
	return err
}

type destKey struct{ transport, nexthop string }

// dest is one destination's in-memory queue and concurrency state (spec
// §7.5).
type dest struct {
	key         destKey
	jobs        []*job
	busy        int
	window      int
	limit       int
	success     float64
	failure     float64
	failCohorts float64
	deadUntil   time.Time
	lastReason  string
	inRing      bool
}

type activeMsg struct {
	id        string
	env       cleanup.Envelope
	size      int64
	status    []Status
	attrs     map[string]string
	activeAt  time.Time
	pending   int       // jobs not yet answered
	thisPass  []Outcome // outcome of this pass per recipient (Pending = not tried)
	expired   bool
	corrupted bool
	// admin is set by postsuper operations (control.go); read by the
	// delivery goroutines.
	admin atomic.Uint32
	// The delivery goroutines' count of this pass's batches (see run).
	mu      sync.Mutex
	running int  // batches not yet run
	delayed bool // a batch left a recipient to try again
	notice  bool // a batch's result calls for a notice
	// removed: the last batch removed the message itself (run).
	removed bool
	// unrecorded are the statuses of the pass's last batch when run did
	// not record them because the message is about to be removed;
	// finishMsg records them if it keeps the message after all.
	unrecorded []Status
}

type job struct {
	m       *activeMsg
	d       *dest
	route   Route // the real next hop when the destination is per recipient
	rcpts   []Recipient
	results []Result
	// suspended: the destination is dead; defer without an attempt.
	suspended string
	start     time.Time
	elapsed   time.Duration
}

func (s *Scheduler) now() time.Time { return s.cfg.Clock.Now() }

func (s *Scheduler) loop() {
	defer close(s.loopDone)
	tick := time.NewTicker(s.cfg.Poll)
	defer tick.Stop()
	for {
		if !s.stopping {
			s.scan()
			s.activateChunk()
			s.dispatch()
		}
		s.answerWaiters()
		if s.stopping && s.inFlight == 0 && s.finishing == 0 {
			s.shutdown()
			return
		}
		var more <-chan time.Time
		if !s.stopping && len(s.backlog) > 0 && len(s.msgs) < s.cfg.MessageActiveLimit {
			more = closedTimeChan // take in the next chunk after handling what is ready
		}
		select {
		case <-more:
		case <-s.wake:
			s.incDirty = true
		case <-s.flushReq:
			s.flushAll = true
		case ch := <-s.syncReq:
			s.incDirty = true
			s.waiters = append(s.waiters, ch)
			// A Flush made before this Sync must count for it.
			select {
			case <-s.flushReq:
				s.flushAll = true
			default:
			}
		case j := <-s.results:
			s.inFlight--
			s.jobDone(j)
		case m := <-s.finished:
			s.finishing--
			delete(s.msgs, m.id)
			s.controlFinished(m)
		case op := <-s.ctl.ops:
			s.control(op)
		case <-tick.C:
			s.sweep()
		case <-s.stopReq:
			s.stopping = true
			s.stopReq = nil
		}
	}
}

var closedTimeChan = func() chan time.Time { c := make(chan time.Time); close(c); return c }()

func (s *Scheduler) answerWaiters() {
	if len(s.waiters) == 0 || len(s.msgs) > 0 || len(s.backlog) > 0 || s.inFlight > 0 || s.finishing > 0 {
		return
	}
	if !s.stopping && (s.incDirty || s.flushAll) {
		return
	}
	for _, ch := range s.waiters {
		close(ch)
	}
	s.waiters = nil
}

// shutdown puts the messages still in memory back in incoming.
func (s *Scheduler) shutdown() {
	for _, w := range s.waiters {
		close(w)
	}
	s.waiters = nil
	for id, m := range s.msgs {
		err := s.q.schedMove(context.Background(), id, Incoming, s.now())
		if err != nil && !errors.Is(err, ErrNotFound) && m.admin.Load() == adminNone {
			s.log.Error("queue: putting a message back in incoming at stop", "queue_id", id, "err", err.Error())
		}
	}
}

// scan takes messages into active: incoming when notified or every
// queue_run_delay, deferred ones whose retry time has come every
// queue_run_delay, alternately (spec §7.3), up to
// qmgr_message_active_limit.
func (s *Scheduler) scan() {
	if len(s.backlog) > 0 {
		return // finish taking in the last scan first
	}
	now := s.now()
	doInc := s.incDirty || !now.Before(s.nextInc)
	doDef := s.flushAll || !now.Before(s.nextDef)
	if !doInc && !doDef {
		return
	}
	var inc, def []Entry
	var err error
	if doInc {
		s.incDirty = false
		s.nextInc = now.Add(s.cfg.QueueRunDelay)
		if inc, err = s.q.List(Incoming); err != nil {
			s.log.Error("queue: scanning incoming", "err", err.Error())
		}
	}
	if doDef {
		flush := s.flushAll
		s.flushAll = false
		s.nextDef = now.Add(s.cfg.QueueRunDelay)
		err = s.q.Walk(Deferred, func(e Entry) error {
			if flush || !e.ModTime.After(now) {
				def = append(def, e)
			}
			return nil
		})
		if err != nil {
			s.log.Error("queue: scanning deferred", "err", err.Error())
		}
		slices.SortFunc(def, func(a, b Entry) int { return a.ModTime.Compare(b.ModTime) })
	}
	// Serve the two queues alternately.
	for i := 0; i < len(inc) || i < len(def); i++ {
		for _, list := range [][]Entry{inc, def} {
			if i < len(list) {
				s.backlog = append(s.backlog, list[i])
			}
		}
	}
}

// activateChunk moves the next messages of the backlog to active, up to
// the room qmgr_message_active_limit leaves, a chunk at a time so that
// deliveries start while a long scan is still being taken in. The moves
// and reads (each with its fsyncs) run in parallel.
func (s *Scheduler) activateChunk() {
	room := s.cfg.MessageActiveLimit - len(s.msgs)
	if room <= 0 || len(s.backlog) == 0 {
		return
	}
	var chunk []Entry
	for len(s.backlog) > 0 && len(chunk) < min(room, activateChunk) {
		e := s.backlog[0]
		s.backlog = s.backlog[1:]
		if _, busy := s.msgs[e.ID]; !busy && s.ctl.pinned[e.ID] == 0 {
			chunk = append(chunk, e)
		}
	}
	if len(s.backlog) == 0 {
		s.backlog = nil
	}
	read := make([]*Message, len(chunk))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(activateWorkers, len(chunk)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				read[i] = s.take(chunk[i])
			}
		}()
	}
	for i := range chunk {
		next <- i
	}
	close(next)
	wg.Wait()
	now := s.now()
	for _, msg := range read {
		if msg != nil {
			s.activate(msg, now)
		}
	}
}

const (
	activateChunk   = 256
	activateWorkers = 16
)

// take moves one message to active and reads it; a damaged one goes to
// corrupt.
func (s *Scheduler) take(e Entry) *Message {
	ctx := context.Background()
	// Only from incoming or deferred: an admin may have held the message
	// since the scan.
	if err := s.q.takeActive(ctx, e.ID); err != nil {
		if !errors.Is(err, ErrNotFound) && !errors.Is(err, errNotSchedulable) {
			s.log.Error("queue: moving a message to active", "queue_id", e.ID, "err", err.Error())
		}
		return nil
	}
	msg, err := s.q.Read(e.ID)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			s.log.Error("queue: damaged queue file moved to corrupt", "queue_id", e.ID, "err", err.Error())
			if err := s.q.Move(ctx, e.ID, Corrupt); err != nil {
				s.log.Error("queue: moving a message to corrupt", "queue_id", e.ID, "err", err.Error())
			}
		} else if !errors.Is(err, ErrNotFound) { // deleted by an admin meanwhile
			s.log.Error("queue: reading a message", "queue_id", e.ID, "err", err.Error())
		}
		return nil
	}
	msg.Close()
	return msg
}

// activate queues a message's recipients' batches at their
// destinations.
func (s *Scheduler) activate(msg *Message, now time.Time) {
	e := Entry{ID: msg.ID}
	m := &activeMsg{id: e.ID, env: msg.Envelope, size: msg.Size, status: msg.Status, attrs: msg.Attrs,
		activeAt: now, thisPass: make([]Outcome, len(msg.Status))}
	s.msgs[e.ID] = m
	s.log.Info(fmt.Sprintf("%s: from=<%s>, size=%d, nrcpt=%d (queue active)", e.ID, m.env.Sender, m.size, len(m.env.Recipients)),
		"queue_id", e.ID)
	s.route(m)
	if m.pending == 0 {
		s.finish(m)
	}
}

// route groups the pending recipients by destination and cuts them into
// batches of at most transport_destination_recipient_limit.
func (s *Scheduler) route(m *activeMsg) {
	type group struct {
		key   destKey
		route Route
		rcpts []Recipient
	}
	var groups []*group
	byKey := map[destKey]*group{}
	var routeFail []Status
	for _, i := range (&Message{Status: m.status}).Pending() {
		r := m.env.Recipients[i]
		addr := r.Addr
		if m.env.Redirect != "" {
			addr = m.env.Redirect // REDIRECT action: qmgr delivers there instead
		}
		var rt Route
		var err error
		if f := m.env.Filter; f != "" {
			// FILTER action: the content filter's transport:nexthop
			// replaces routing.
			t, nh, _ := strings.Cut(f, ":")
			rt = Route{Transport: t, Nexthop: nh}
		} else {
			rt, err = s.cfg.Router.Route(s.dctx, &m.env, addr)
		}
		if err != nil {
			st := Status{Rcpt: i, Outcome: Delayed, DSN: "4.3.0", Reason: err.Error()}
			var re *RouteError
			if errors.As(err, &re) {
				st.Reason = re.Reason
				if re.DSN != "" {
					st.DSN = re.DSN
				}
				if re.Permanent {
					st.Outcome = Failed
					if re.DSN == "" {
						st.DSN = "5.3.0"
					}
				}
			}
			routeFail = append(routeFail, st)
			continue
		}
		_, limit := s.cfg.limits(rt.Transport)
		key := destKey{rt.Transport, rt.Nexthop}
		if limit == 1 {
			// transport_destination_recipient_limit = 1: each recipient is
			// a destination of its own (spec §7.5).
			key.nexthop = addr
		}
		g := byKey[key]
		if g == nil {
			g = &group{key: key, route: rt}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.rcpts = append(g.rcpts, Recipient{Index: i, Addr: addr, Recipient: r})
	}
	var failJob *job
	if len(routeFail) > 0 {
		// A batch of its own, answered without a delivery.
		failJob = &job{m: m, rcpts: nil, suspended: "route"}
		for _, st := range routeFail {
			failJob.rcpts = append(failJob.rcpts, Recipient{Index: st.Rcpt, Addr: m.env.Recipients[st.Rcpt].Addr, Recipient: m.env.Recipients[st.Rcpt]})
			failJob.results = append(failJob.results, Result{Outcome: st.Outcome, DSN: st.DSN, Reason: st.Reason})
		}
		m.pending++
	}
	for _, g := range groups {
		d := s.dest(g.key)
		_, limit := s.cfg.limits(g.key.transport)
		for len(g.rcpts) > 0 {
			n := min(limit, len(g.rcpts))
			j := &job{m: m, d: d, route: g.route, rcpts: g.rcpts[:n:n]}
			g.rcpts = g.rcpts[n:]
			m.pending++
			d.jobs = append(d.jobs, j)
		}
		if !d.inRing {
			d.inRing = true
			s.ring = append(s.ring, d)
		}
	}
	// Every batch is counted before the first one starts.
	m.running = m.pending
	if failJob != nil {
		s.startJob(failJob)
	}
}

// maybeDrop forgets an idle destination, as Postfix's qmgr drops an
// empty in-memory queue, so that per-recipient destinations do not pile
// up; a dead one is kept until its suspension ends (sweep).
func (s *Scheduler) maybeDrop(d *dest, now time.Time) {
	if len(d.jobs) == 0 && d.busy == 0 && !d.inRing && !now.Before(d.deadUntil) && s.dests[d.key] == d {
		delete(s.dests, d.key)
	}
}

// sweep drops the idle destinations whose suspension has ended.
func (s *Scheduler) sweep() {
	now := s.now()
	for _, d := range s.dests {
		s.maybeDrop(d, now)
	}
}

func (s *Scheduler) dest(k destKey) *dest {
	d := s.dests[k]
	if d == nil {
		conc, _ := s.cfg.limits(k.transport)
		d = &dest{key: k, limit: conc, window: min(s.cfg.InitialConcurrency, conc)}
		s.dests[k] = d
	}
	return d
}

// dispatch starts deliveries, one job per destination in turn (round
// robin), while the destinations' windows and the process limit allow.
// A dead destination's jobs are deferred without an attempt.
func (s *Scheduler) dispatch() {
	now := s.now()
	started := false
	for {
		progressed := false
		for n := len(s.ring); n > 0 && s.inFlight < s.cfg.ProcessLimit; n-- {
			if len(s.ring) == 0 {
				break
			}
			if s.ringPos >= len(s.ring) {
				s.ringPos = 0
			}
			d := s.ring[s.ringPos]
			if len(d.jobs) == 0 {
				d.inRing = false
				s.ring = slices.Delete(s.ring, s.ringPos, s.ringPos+1)
				s.maybeDrop(d, now)
				continue
			}
			s.ringPos++
			if !d.deadUntil.IsZero() {
				if now.Before(d.deadUntil) {
					// Suspended: defer everything queued here at once.
					for _, j := range d.jobs {
						j.suspended = "delivery temporarily suspended: " + d.lastReason
						s.startJob(j)
					}
					d.jobs = nil
					progressed = true
					continue
				}
				// The throttle expired: try again from the start.
				d.deadUntil = time.Time{}
				d.window = min(s.cfg.InitialConcurrency, d.limit)
				d.failCohorts, d.success, d.failure = 0, 0, 0
			}
			if d.busy >= d.window {
				continue
			}
			j := d.jobs[0]
			d.jobs[0] = nil
			d.jobs = d.jobs[1:]
			d.busy++
			s.startJob(j)
			progressed, started = true, true
		}
		if !progressed || s.inFlight >= s.cfg.ProcessLimit || len(s.ring) == 0 {
			if started {
				// Let the deliveries just started run before the loop
				// takes the next result: with deliveries that finish
				// at once, the loop and one delivery goroutine can
				// hand the processor to each other and leave another
				// delivery waiting to start for a whole time slice,
				// out of its round-robin turn.
				runtime.Gosched()
			}
			return
		}
	}
}

func (s *Scheduler) startJob(j *job) {
	s.inFlight++
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		s.run(j)
		s.results <- j
	}()
}

// run performs one job in its own goroutine: the delivery (unless
// suspended), the log lines and the durable status record.
func (s *Scheduler) run(j *job) {
	m := j.m
	j.start = s.now()
	if j.suspended == "" {
		j.results = s.deliver(j)
	} else if j.results == nil {
		for range j.rcpts {
			j.results = append(j.results, Result{Outcome: Delayed, DSN: "4.4.1", Reason: j.suspended})
		}
	}
	j.elapsed = s.now().Sub(j.start)
	var st []Status
	for i, r := range j.rcpts {
		res := j.results[i]
		st = append(st, Status{Rcpt: r.Index, Outcome: res.Outcome, DSN: res.DSN, Action: res.Action,
			Relay: res.Relay, Reason: res.Reason})
		s.logStatus(m, r, res, j)
	}
	if m.admin.Load() == adminDeleted {
		return // postsuper -d: nothing to record
	}
	if last, notice := s.lastOfPass(j); last {
		// No recipient is left to try: the message is removed (durably)
		// once the notices are out, so this record would be synced only
		// to be deleted. A crash before the removal tries the pass's
		// recipients again, as one before a record would; to keep that
		// window short, a message that needs no notice is removed here,
		// without waiting for the loop.
		m.unrecorded = st
		if !notice && s.q.remove(context.WithoutCancel(s.dctx), m.id, true) == nil {
			m.removed = true
		}
		return
	}
	if err := s.q.MarkRecipients(s.dctx, m.id, st); err != nil && m.admin.Load() != adminDeleted {
		// The statuses live on in memory for this pass; a crash before
		// the next record means these recipients are tried again.
		s.log.Error("queue: recording delivery statuses", "queue_id", m.id, "err", err.Error())
	}
}

// lastOfPass counts a batch as run and says whether it was the pass's
// last and left no recipient of the message to try again, and whether
// the pass calls for a notice (finishMsg's rules: a failure, a success
// with NOTIFY=SUCCESS, or a failure notice still to hand over). Batches
// that an admin dropped before they started never count down, so a
// message held or deleted meanwhile always has its statuses recorded.
func (s *Scheduler) lastOfPass(j *job) (last, notice bool) {
	m := j.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running--
	for i, r := range j.results {
		switch {
		case r.Outcome == Failed:
			m.notice = true
		case r.Outcome == Delivered:
			if notifySuccess(j.rcpts[i].Notify) {
				m.notice = true
			}
		default:
			m.delayed = true
		}
	}
	last = m.running == 0 && !m.delayed && !s.q.strict && m.admin.Load() == adminNone
	return last, m.notice || m.attrs[attrNoticePending] != ""
}

// deliver calls the Deliverer, turning a panic or missing statuses into
// deferrals so that one bad delivery agent cannot stop the scheduler.
func (s *Scheduler) deliver(j *job) (res []Result) {
	m := j.m
	env := m.env
	d := &Delivery{QueueID: m.id, Envelope: &env, Transport: j.d.key.transport, Nexthop: j.d.key.nexthop,
		Recipients: j.rcpts, Size: m.size, Open: s.opener(m)}
	if j.route != (Route{}) {
		d.Nexthop = j.route.Nexthop
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("queue: delivery agent panicked", "queue_id", m.id, "transport", d.Transport,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			res = make([]Result, len(j.rcpts))
			for i := range res {
				res[i] = Result{Outcome: Delayed, DSN: "4.3.0", Reason: "unknown mail transport error", Site: true}
			}
		}
	}()
	got := s.cfg.Deliverer.Deliver(s.dctx, d)
	res = make([]Result, len(j.rcpts))
	for i := range res {
		if i < len(got) && got[i].Outcome != Pending {
			res[i] = got[i]
			if res[i].Outcome > Failed {
				res[i].Outcome = Delayed
			}
		} else {
			res[i] = Result{Outcome: Delayed, DSN: "4.3.0", Reason: "delivery agent returned no status"}
		}
		if res[i].DSN == "" {
			res[i].DSN = defaultDSN[res[i].Outcome]
		}
	}
	return res
}

func (s *Scheduler) opener(m *activeMsg) func() (io.ReadCloser, error) {
	id, size := m.id, m.size
	if !s.q.strict {
		// take read the message whole and checked it.
		return func() (io.ReadCloser, error) { return s.q.openContent(id, size) }
	}
	return func() (io.ReadCloser, error) {
		msg, err := s.q.Read(id)
		if err != nil {
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{msg.Content(), msg}, nil
	}
}

var statusWords = map[Outcome]string{Delivered: "sent", Delayed: "deferred", Failed: "bounced"}

// defaultDSN is the RFC 3463 status of a Result that names none.
var defaultDSN = map[Outcome]string{Delivered: "2.0.0", Delayed: "4.0.0", Failed: "5.0.0"}

// logStatus writes the delivery status line (spec §8.7).
func (s *Scheduler) logStatus(m *activeMsg, r Recipient, res Result, j *job) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: to=<%s>, ", m.id, r.Addr)
	if r.Original != "" && !strings.EqualFold(r.Original, r.Addr) {
		fmt.Fprintf(&b, "orig_to=<%s>, ", r.Original)
	}
	relay := res.Relay
	if relay == "" {
		relay = "none"
	}
	end := j.start.Add(j.elapsed)
	a := m.activeAt.Sub(m.env.Arrival)
	bq := j.start.Sub(m.activeAt)
	c, d := res.Conn, res.Xfer
	if c == 0 && d == 0 {
		d = j.elapsed
	}
	fmt.Fprintf(&b, "relay=%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)", relay,
		formatDelay(end.Sub(m.env.Arrival)), formatDelay(a), formatDelay(bq), formatDelay(c), formatDelay(d),
		res.DSN, statusWords[res.Outcome], res.Reason)
	s.log.Info(b.String(), "queue_id", m.id)
}

// jobDone records a job's outcome in memory and applies the concurrency
// feedback of spec §7.5.
func (s *Scheduler) jobDone(j *job) {
	m := j.m
	for i, r := range j.rcpts {
		res := j.results[i]
		m.status[r.Index] = Status{Rcpt: r.Index, Outcome: res.Outcome, DSN: res.DSN, Action: res.Action,
			Relay: res.Relay, Reason: res.Reason, At: j.start}
		m.thisPass[r.Index] = res.Outcome
	}
	if d := j.d; d != nil && j.suspended == "" {
		d.busy--
		site := false
		for _, r := range j.results {
			if r.Site {
				site = true
				d.lastReason = r.Reason
			}
		}
		if site {
			s.negative(d)
		} else {
			s.positive(d)
		}
		s.maybeDrop(d, s.now())
	}
	m.pending--
	if m.pending == 0 {
		s.finish(m)
	}
}

// positive: constant feedback 1 (default_destination_concurrency_
// positive_feedback = 1), so the window grows by one per good delivery,
// doubling per cohort; it grows only while below busy + initial
// concurrency, and never past the limit.
func (s *Scheduler) positive(d *dest) {
	d.failCohorts = 0
	d.failure = 0
	if d.window < d.limit && d.window < d.busy+s.cfg.InitialConcurrency {
		d.success++
		for d.success >= 1 {
			d.success--
			d.window = min(d.window+1, d.limit)
		}
	}
}

// negative: the window shrinks by one (at least 1), and a window's worth
// of consecutive site failures (failed_cohort_limit cohorts) declares the
// destination dead for minimal_backoff_time.
func (s *Scheduler) negative(d *dest) {
	d.success = 0
	d.failure--
	for d.failure < 0 {
		d.failure++
		d.window = max(d.window-1, 1)
	}
	d.failCohorts += 1 / float64(d.window)
	if d.failCohorts >= s.cfg.FailedCohortLimit && d.deadUntil.IsZero() {
		d.deadUntil = s.now().Add(s.cfg.MinimalBackoff)
		s.log.Warn(fmt.Sprintf("%s destination %s is dead: %s", d.key.transport, d.key.nexthop, d.lastReason),
			"transport", d.key.transport, "nexthop", d.key.nexthop)
	}
}

// finish ends a message's pass in a goroutine (it does disk work).
func (s *Scheduler) finish(m *activeMsg) {
	s.finishing++
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		s.finishMsg(m)
		s.finished <- m
	}()
}

// finishMsg applies spec §7.3 and §7.4 after a pass: expiry, the
// notices, then remove or defer.
func (s *Scheduler) finishMsg(m *activeMsg) {
	if m.admin.Load() == adminDeleted {
		return // postsuper -d: no notices, nothing to move
	}
	if m.removed {
		s.log.Info(m.id+": removed", "queue_id", m.id)
		return
	}
	moved := m.admin.Load() == adminMoved // held or requeued: no expiry
	ctx := s.dctx
	now := s.now()
	var delayed, failed, success []int
	for i, st := range m.status {
		switch {
		case st.Outcome == Delayed || st.Outcome == Pending:
			delayed = append(delayed, i)
		case st.Outcome == Failed && m.thisPass[i] == Failed:
			failed = append(failed, i)
		case st.Outcome == Delivered && m.thisPass[i] == Delivered && notifySuccess(m.env.Recipients[i].Notify):
			success = append(success, i)
		}
	}
	// Failure notices that an earlier pass could not hand over.
	if p := m.attrs[attrNoticePending]; p != "" {
		for _, f := range strings.Split(p, ",") {
			if n, err := strconv.Atoi(f); err == nil && n >= 0 && n < len(m.status) && !slices.Contains(failed, n) {
				failed = append(failed, n)
			}
		}
		slices.Sort(failed)
	}
	expired := false
	if len(delayed) > 0 && !moved {
		life := lifetime(m.env.Sender, s.cfg.MaxQueueLifetime, s.cfg.BounceLifetime)
		if !now.Before(m.env.Arrival.Add(life)) || m.attrs[AttrForceExpire] != "" {
			expired = true
			var st []Status
			for _, i := range delayed {
				old := m.status[i]
				m.status[i] = Status{Rcpt: i, Outcome: Failed, DSN: old.DSN, Relay: old.Relay, Reason: old.Reason}
				if m.status[i].DSN == "" {
					m.status[i].DSN = "4.7.0"
				}
				if m.status[i].Reason == "" {
					m.status[i].Reason = "message delivery expired"
				}
				st = append(st, m.status[i])
			}
			if err := s.q.MarkRecipients(ctx, m.id, st); err != nil {
				s.log.Error("queue: recording expiry", "queue_id", m.id, "err", err.Error())
			}
			word := "expired"
			if m.attrs[AttrForceExpire] != "" {
				word = "force-expired"
			}
			s.log.Info(fmt.Sprintf("%s: from=<%s>, status=%s, returned to sender", m.id, m.env.Sender, word), "queue_id", m.id)
			failed = append(failed, delayed...)
			slices.Sort(failed)
			delayed = nil
		}
	}
	attrs := map[string]string{}
	if len(failed) > 0 {
		if err := s.notify(ctx, m, FailureNotice, failed, expired); err != nil {
			s.log.Error("queue: sending a non-delivery notice; will try again", "queue_id", m.id, "err", err.Error())
			var parts []string
			for _, i := range failed {
				parts = append(parts, strconv.Itoa(i))
			}
			attrs[attrNoticePending] = strings.Join(parts, ",")
		} else if m.attrs[attrNoticePending] != "" {
			attrs[attrNoticePending] = ""
		}
	}
	if len(success) > 0 {
		if err := s.notify(ctx, m, SuccessNotice, success, false); err != nil {
			s.log.Error("queue: sending a success notice", "queue_id", m.id, "err", err.Error())
		}
	}
	if len(delayed) > 0 && !moved && s.cfg.DelayWarning > 0 && m.attrs[AttrDelayWarned] == "" &&
		!now.Before(m.env.Arrival.Add(s.cfg.DelayWarning)) {
		if err := s.notify(ctx, m, DelayNotice, delayed, false); err != nil {
			s.log.Error("queue: sending a delay warning", "queue_id", m.id, "err", err.Error())
		} else {
			attrs[AttrDelayWarned] = now.UTC().Format(time.RFC3339)
		}
	}
	if len(delayed) == 0 && attrs[attrNoticePending] == "" {
		rctx := ctx
		if m.unrecorded != nil {
			// The last batch's delivery is done but not recorded: finish
			// the job even when a hard Stop cancelled the deliveries.
			rctx = context.WithoutCancel(ctx)
		}
		if err := s.q.remove(rctx, m.id, true); err != nil {
			if m.admin.Load() == adminNone { // else postsuper got there first
				s.log.Error("queue: removing a message", "queue_id", m.id, "err", err.Error())
				s.recordUnrecorded(rctx, m, nil)
			}
			return
		}
		s.log.Info(m.id+": removed", "queue_id", m.id)
		return
	}
	if m.unrecorded != nil {
		// Kept after all (a notice could not be handed over): the
		// statuses go in one durable record with the flags.
		s.recordUnrecorded(context.WithoutCancel(ctx), m, attrs)
	} else if len(attrs) > 0 {
		if err := s.q.SetAttr(ctx, m.id, attrs); err != nil {
			s.log.Error("queue: recording message flags", "queue_id", m.id, "err", err.Error())
		}
	}
	delay := retryDelay(m.env.Arrival, now, s.cfg.MinimalBackoff, s.cfg.MaximalBackoff)
	// Only from active: an admin may have put the message on hold
	// meanwhile (postsuper -h), and hold must win.
	if err := s.q.schedMove(ctx, m.id, Deferred, now.Add(delay)); err != nil && m.admin.Load() == adminNone {
		s.log.Error("queue: deferring a message", "queue_id", m.id, "err", err.Error())
	}
}

// recordUnrecorded writes the statuses run left for finishMsg, with the
// message flags attrs, as one durable record.
func (s *Scheduler) recordUnrecorded(ctx context.Context, m *activeMsg, attrs map[string]string) {
	if len(attrs) == 0 {
		attrs = nil
	}
	if err := s.q.appendStatus(ctx, m.id, statusRecord{Status: m.unrecorded, Attrs: attrs}); err != nil {
		s.log.Error("queue: recording delivery statuses", "queue_id", m.id, "err", err.Error())
	}
	m.unrecorded = nil
}

// Message attributes the scheduler keeps with SetAttr.
const (
	// AttrDelayWarned is set once the delay warning went out, so that it
	// goes out once per message (spec §7.4).
	AttrDelayWarned = "delay_warned"
	// AttrForceExpire makes the next pass expire the message's deferred
	// recipients (postsuper -e/-f); the admin layer sets it.
	AttrForceExpire = "force_expire"
	// attrNoticePending lists recipients whose failure notice could not
	// be handed to the Notifier yet.
	attrNoticePending = "failure_notice_pending"
)

func notifySuccess(n []string) bool {
	for _, k := range n {
		if strings.EqualFold(k, "SUCCESS") {
			return true
		}
	}
	return false
}

func (s *Scheduler) notify(ctx context.Context, m *activeMsg, k NoticeKind, rcpts []int, expired bool) error {
	if s.cfg.Notifier == nil {
		s.log.Info(fmt.Sprintf("%s: %s notice for %d recipient(s) not sent: no notifier", m.id, k, len(rcpts)), "queue_id", m.id)
		return nil
	}
	env := m.env
	n := &Notice{Kind: k, QueueID: m.id, Envelope: &env, Statuses: slices.Clone(m.status),
		Recipients: rcpts, Expired: expired, Open: s.opener(m)}
	return s.cfg.Notifier.Notify(ctx, n)
}
