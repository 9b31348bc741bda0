package queue

// Administration of a running queue: what postsuper -d/-h/-H/-r and
// postqueue -f/-s/-i do, coordinated with the Scheduler so that it acts
// on the change at once and never undoes it. Package queue/control puts
// these calls behind a unix socket for the postkit commands.
//
// The coordination works by pinning: before an operation touches a
// message on disk, the scheduler's loop marks the IDs as pinned (it will
// not take a pinned message into active) and flags the messages it holds
// in active (a deleted message's in-flight deliveries record nothing; a
// held or requeued one finishes its current attempt and is then left
// where the admin put it). After the disk operations the IDs are
// unpinned, and released or requeued messages are handed to the
// scheduler directly instead of waiting for the next queue scan.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/postkit-mail/postkit/address"
)

// AdminOp is one of postsuper's message operations.
type AdminOp uint8

const (
	// AdminDelete removes messages (postsuper -d), even active ones: the
	// deliveries in flight finish, but nothing they report is recorded,
	// no notice goes out, and the message is never seen again.
	AdminDelete AdminOp = iota + 1
	// AdminHold moves messages to hold (postsuper -h). An active message
	// finishes the attempts in flight; its batches not yet started are
	// not tried, and it stays held.
	AdminHold
	// AdminRelease moves held messages to deferred, due now, and hands
	// them to the scheduler at once (postsuper -H).
	AdminRelease
	// AdminRequeue moves messages back to incoming with their queue ID
	// and statuses (postsuper -r); the scheduler takes them up at once.
	// An active message is taken up again after its current attempt.
	// Unlike Postfix, the message does not go through cleanup again.
	AdminRequeue
	// AdminExpire marks messages for forced expiry (postsuper -e, with
	// -f also releasing them from hold): the scheduler returns such a
	// message to its sender after its next attempt, as Postfix's qmgr
	// does. Only messages not marked yet count. A held message stays
	// held (and unexpired) until released.
	AdminExpire
)

var adminOpNames = [...]string{AdminDelete: "delete", AdminHold: "hold", AdminRelease: "release", AdminRequeue: "requeue",
	AdminExpire: "expire"}

func (o AdminOp) String() string {
	if o >= AdminDelete && o <= AdminExpire {
		return adminOpNames[o]
	}
	return fmt.Sprintf("AdminOp(%d)", o)
}

// States returns the queues the operation looks in when none is named,
// as postsuper's defaults: hold, incoming, active and deferred for -d and
// -r, incoming, active and deferred for -h, hold for -H.
func (o AdminOp) States() []State {
	switch o {
	case AdminDelete, AdminRequeue, AdminExpire:
		return []State{Hold, Incoming, Active, Deferred}
	case AdminHold:
		return []State{Incoming, Active, Deferred}
	case AdminRelease:
		return []State{Hold}
	}
	return nil
}

// allowed is where an operation may take a message from at all; a queue
// named outside it matches nothing. Only delete reaches corrupt, and only
// when corrupt is named.
func (o AdminOp) allowed() []State {
	if o == AdminDelete {
		return []State{Hold, Incoming, Active, Deferred, Corrupt}
	}
	return o.States()
}

// adminLog is the maillog word of each operation, as postsuper logs it.
var adminLog = [...]string{AdminDelete: "removed", AdminHold: "placed on hold", AdminRelease: "released from hold", AdminRequeue: "requeued",
	AdminExpire: "expired"}

// adminStates resolves the queues of an operation: states limited to
// those the operation can act on.
func adminStates(op AdminOp, states []State) ([]State, error) {
	if op < AdminDelete || op > AdminExpire {
		return nil, fmt.Errorf("queue: unknown admin operation %d", op)
	}
	if len(states) == 0 {
		return op.States(), nil
	}
	var out []State
	for _, s := range states {
		if !validState(s) {
			return nil, fmt.Errorf("queue: no queue %q", s)
		}
		if slices.Contains(op.allowed(), s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// adminIDs returns the IDs to act on: ids, or with ids nil (ALL) every
// message now in states. IDs that cannot be queue IDs are left out:
// no such message can exist.
func (q *Queue) adminIDs(ids []string, states []State) ([]string, error) {
	if ids == nil {
		var all []string
		for _, s := range states {
			es, err := q.List(s)
			if err != nil {
				return nil, err
			}
			for _, e := range es {
				all = append(all, e.ID)
			}
		}
		return all, nil
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if ValidID(id) && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// Admin applies op to the messages ids (nil means ALL) found in states
// (nil means op.States()), directly on disk, and returns the IDs of the
// messages it acted on (postsuper reports how many). Messages not found
// or not in those states are skipped. With a running Scheduler use
// Scheduler.Admin instead, so that the scheduler sees the change.
func (q *Queue) Admin(ctx context.Context, op AdminOp, ids []string, states []State) ([]string, error) {
	states, err := adminStates(op, states)
	if err != nil {
		return nil, err
	}
	list, err := q.adminIDs(ids, states)
	if err != nil {
		return nil, fmt.Errorf("queue: %s: %w", op, err)
	}
	return q.adminApply(ctx, op, list, states, q.log)
}

// adminApply performs op on each message of ids that is in one of
// states, and returns those it acted on.
func (q *Queue) adminApply(ctx context.Context, op AdminOp, ids []string, states []State, log *slog.Logger) ([]string, error) {
	var done []string
	for _, id := range ids {
		ok, err := q.adminOne(ctx, op, id, states)
		if err != nil {
			return done, err
		}
		if ok {
			done = append(done, id)
			log.Info(id+": "+adminLog[op], "queue_id", id)
		}
	}
	return done, nil
}

// adminOne performs op on one message if it is in one of states.
func (q *Queue) adminOne(ctx context.Context, op AdminOp, id string, states []State) (bool, error) {
	if err := q.enter(); err != nil {
		return false, err
	}
	// Where the message is; the operations below check again under the
	// message's lock, except Remove, which a pinned message makes safe
	// (the scheduler moves it nowhere meanwhile).
	mu := q.lockID(id)
	mu.Lock()
	s, err := q.locate(id)
	mu.Unlock()
	q.leave()
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrBadID) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !slices.Contains(states, s) {
		return false, nil
	}
	switch op {
	case AdminDelete:
		err = q.Remove(ctx, id)
	case AdminHold:
		err = q.move(ctx, id, Hold, states, time.Time{})
	case AdminRelease:
		err = q.move(ctx, id, Deferred, states, q.clock.Now())
	case AdminRequeue:
		err = q.move(ctx, id, Incoming, states, q.clock.Now())
	case AdminExpire:
		var m *Message
		if m, err = q.Read(id); err == nil {
			m.Close()
			if m.Attrs[AttrForceExpire] != "" {
				return false, nil // marked already
			}
			err = q.SetAttr(ctx, id, map[string]string{AttrForceExpire: "1"})
		}
	}
	if err == nil {
		return true, nil
	}
	if errors.Is(err, ErrNotFound) {
		return false, nil // finished meanwhile
	}
	if ctx.Err() != nil {
		return false, err
	}
	// Moved out of states meanwhile (the scheduler finished it): not
	// ours to act on any more.
	mu.Lock()
	now, lerr := q.locate(id)
	mu.Unlock()
	if lerr != nil || !slices.Contains(states, now) {
		return false, nil
	}
	return false, fmt.Errorf("queue: %s %s: %w", op, id, err)
}

// makeDue sets a deferred message's retry time to now. It reports
// whether the message is now waiting in incoming or deferred (so the
// scheduler may take it).
func (q *Queue) makeDue(ctx context.Context, id string) (bool, error) {
	err := q.move(ctx, id, Deferred, []State{Deferred}, q.clock.Now())
	if err == nil {
		return true, nil
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrBadID) {
		return false, nil
	}
	if ctx.Err() != nil {
		return false, err
	}
	if err := q.enter(); err != nil {
		return false, err
	}
	defer q.leave()
	mu := q.lockID(id)
	mu.Lock()
	defer mu.Unlock()
	s, lerr := q.locate(id)
	if lerr != nil {
		return false, nil
	}
	// Held, active or corrupt: nothing to make due. Incoming is due
	// already.
	return s == Incoming, nil
}

// ErrNotRunning is returned by the scheduler's admin triggers (FlushAll,
// FlushSite, DeliverNow) when the scheduler is not running.
var ErrNotRunning = errors.New("queue: the scheduler is not running")

// errNotSchedulable is take's quiet refusal of a message that is not in
// incoming or deferred (held meanwhile, say).
var errNotSchedulable = errors.New("not in incoming or deferred")

// takeActive moves a message to active only from incoming or deferred,
// so that a message held or being deleted by an admin after the scan
// saw it is left alone.
func (q *Queue) takeActive(ctx context.Context, id string) error {
	err := q.move(ctx, id, Active, []State{Incoming, Deferred}, time.Time{})
	if err == nil || errors.Is(err, ErrNotFound) || ctx.Err() != nil {
		return err
	}
	if e := q.enter(); e != nil {
		return e
	}
	defer q.leave()
	mu := q.lockID(id)
	mu.Lock()
	defer mu.Unlock()
	if s, lerr := q.locate(id); lerr == nil && s != Incoming && s != Deferred {
		return errNotSchedulable
	}
	return err
}

// Admin flags of a message in active (activeMsg.admin).
const (
	adminNone uint32 = iota
	adminDeleted
	adminMoved // held or requeued: left where the admin put it
)

// schedControl is the scheduler's side of the admin operations. Its
// maps are owned by the loop goroutine.
type schedControl struct {
	ops     chan *ctlOp
	pinned  map[string]int
	started atomic.Bool // Start was called: the loop reads ops
}

func (c *schedControl) init() {
	c.ops = make(chan *ctlOp)
	c.pinned = map[string]int{}
}

// ctlOp is one request to the loop.
type ctlOp struct {
	pin   []string
	op    AdminOp // with pin: what is about to happen to them
	flag  bool    // with pin: flag the ones in active
	unpin []string
	// due are handed to the scheduler now (released, requeued, flushed).
	due []string
	// revive ends the suspension of the dead destinations it matches.
	revive   func(destKey) bool
	flushAll bool
	done     chan struct{}
}

// control runs in the loop goroutine.
func (s *Scheduler) control(op *ctlOp) {
	defer close(op.done)
	for _, id := range op.pin {
		s.ctl.pinned[id]++
		m := s.msgs[id]
		if m == nil || !op.flag {
			continue
		}
		switch op.op {
		case AdminDelete:
			m.admin.Store(adminDeleted)
		case AdminHold, AdminRequeue:
			m.admin.CompareAndSwap(adminNone, adminMoved)
		default:
			continue
		}
		s.dropQueued(m)
	}
	for _, id := range op.unpin {
		if s.ctl.pinned[id]--; s.ctl.pinned[id] <= 0 {
			delete(s.ctl.pinned, id)
		}
	}
	for _, id := range op.due {
		if _, busy := s.msgs[id]; !busy && s.ctl.pinned[id] == 0 {
			s.backlog = append(s.backlog, Entry{ID: id})
		}
	}
	if op.revive != nil {
		now := s.now()
		for k, d := range s.dests {
			if !d.deadUntil.IsZero() && now.Before(d.deadUntil) && op.revive(k) {
				// dispatch restarts it from the initial window.
				d.deadUntil = now
				s.log.Info(fmt.Sprintf("%s destination %s: delivery resumed by flush", k.transport, k.nexthop),
					"transport", k.transport, "nexthop", k.nexthop)
			}
		}
	}
	if op.flushAll {
		s.flushAll = true
		s.incDirty = true
	}
}

// dropQueued forgets a message's batches that have not started, so a
// deleted or held message gets no new attempts; its recipients keep the
// statuses they had.
func (s *Scheduler) dropQueued(m *activeMsg) {
	dropped := 0
	for _, d := range s.ring {
		kept := d.jobs[:0]
		for _, j := range d.jobs {
			if j.m == m {
				dropped++
				continue
			}
			kept = append(kept, j)
		}
		clear(d.jobs[len(kept):])
		d.jobs = kept
	}
	if dropped == 0 {
		return
	}
	m.pending -= dropped
	if m.pending == 0 {
		s.finish(m)
	}
}

// controlFinished runs in the loop when a message leaves the scheduler:
// one held or requeued during its attempt may be due again (requeued,
// or released meanwhile).
func (s *Scheduler) controlFinished(m *activeMsg) {
	if m.admin.Load() == adminMoved && s.ctl.pinned[m.id] == 0 {
		s.backlog = append(s.backlog, Entry{ID: m.id})
	}
}

// send hands op to the loop and waits until it is applied. It reports
// false when the scheduler is not running (the caller then works on the
// disk alone).
func (s *Scheduler) send(ctx context.Context, op *ctlOp) (bool, error) {
	op.done = make(chan struct{})
	select {
	case s.ctl.ops <- op:
	case <-s.loopDone:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case <-op.done:
		return true, nil
	case <-ctx.Done():
		// The loop applies it anyway; an unmatched pin would only
		// keep the messages from the scheduler, so wait it out.
		<-op.done
		return true, ctx.Err()
	}
}

// running reports whether the loop runs.
func (s *Scheduler) running() bool {
	select {
	case <-s.loopDone:
		return false
	default:
	}
	// Before Start the loop does not read ops; do not block on it.
	return s.ctl.started.Load()
}

// Admin applies op like Queue.Admin and makes the running scheduler act
// on it at once: deleted, held or requeued messages in active get no new
// attempts and nothing of the attempts in flight brings a deleted message
// back; released and requeued messages are scheduled now.
func (s *Scheduler) Admin(ctx context.Context, op AdminOp, ids []string, states []State) ([]string, error) {
	q := s.q
	states, err := adminStates(op, states)
	if err != nil {
		return nil, err
	}
	list, err := q.adminIDs(ids, states)
	if err != nil {
		return nil, fmt.Errorf("queue: %s: %w", op, err)
	}
	if len(list) == 0 {
		return nil, nil
	}
	live := s.running()
	if live {
		if live, err = s.send(ctx, &ctlOp{pin: list, op: op, flag: slices.Contains(states, Active)}); err != nil {
			return nil, err
		}
	}
	done, err := q.adminApply(ctx, op, list, states, s.log)
	if live {
		un := &ctlOp{unpin: list}
		if op == AdminRelease || op == AdminRequeue {
			un.due = done
		}
		if _, uerr := s.send(context.WithoutCancel(ctx), un); uerr != nil && err == nil {
			err = uerr
		}
	}
	return done, err
}

// FlushAll is postqueue -f: incoming and every deferred message are
// scanned now, and destinations that were declared dead are tried again
// (Postfix's "flush dead" request to qmgr). It returns once the
// scheduler has taken the request.
func (s *Scheduler) FlushAll(ctx context.Context) error {
	if !s.running() {
		return ErrNotRunning
	}
	live, err := s.send(ctx, &ctlOp{flushAll: true, revive: func(destKey) bool { return true }})
	if err == nil && !live {
		err = ErrNotRunning
	}
	return err
}

// FlushSite is postqueue -s SITE: the deferred messages with a recipient
// still to be delivered in domain site (case-insensitive; a leading '['
// and trailing ']' are ignored) become due now and are scheduled at
// once, and the dead destinations whose next hop is site are tried
// again. It returns how many messages it scheduled.
func (s *Scheduler) FlushSite(ctx context.Context, site string) (int, error) {
	site = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(site, "["), "]"))
	if site == "" {
		return 0, errors.New("queue: flush: empty site")
	}
	if !s.running() {
		return 0, ErrNotRunning
	}
	es, err := s.q.List(Deferred)
	if err != nil {
		return 0, fmt.Errorf("queue: flushing %s: %w", site, err)
	}
	var due []string
	for _, e := range es {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		m, err := s.q.Read(e.ID)
		if err != nil {
			continue // gone, or corrupt: not ours to flush
		}
		match := false
		for _, i := range m.Pending() {
			if strings.EqualFold(address.Split(m.Envelope.Recipients[i].Addr).Domain, site) {
				match = true
				break
			}
		}
		m.Close()
		if !match {
			continue
		}
		ok, err := s.q.makeDue(ctx, e.ID)
		if err != nil {
			return 0, fmt.Errorf("queue: flushing %s: %w", site, err)
		}
		if ok {
			due = append(due, e.ID)
		}
	}
	revive := func(k destKey) bool {
		return strings.EqualFold(strings.TrimSuffix(strings.TrimPrefix(k.nexthop, "["), "]"), site) ||
			strings.EqualFold(k.nexthop, site)
	}
	if _, err := s.send(ctx, &ctlOp{due: due, revive: revive}); err != nil {
		return 0, err
	}
	return len(due), nil
}

// DeliverNow is postqueue -i ID: a deferred message becomes due now and
// is scheduled at once; one in incoming is scheduled at once. A message
// that is active, held or not in the queue is left alone, without an
// error, as Postfix does.
func (s *Scheduler) DeliverNow(ctx context.Context, id string) error {
	if !s.running() {
		return ErrNotRunning
	}
	ok, err := s.q.makeDue(ctx, id)
	if err != nil || !ok {
		return err
	}
	_, err = s.send(ctx, &ctlOp{due: []string{id}})
	return err
}

// Queue returns the queue the scheduler runs.
func (s *Scheduler) Queue() *Queue { return s.q }
