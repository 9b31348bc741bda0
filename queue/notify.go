package queue

// OnCommit sets fn to be called with the queue ID after each successful
// Commit into incoming, so the scheduler sees new mail at once instead of
// at its next queue_run_delay scan (Postfix's cleanup notifies qmgr the
// same way). A message committed to hold (env.Hold) is not reported: it
// is no work for the scheduler until it is released.
// fn must not block; nil removes the hook.
func (q *Queue) OnCommit(fn func(id string)) {
	if fn == nil {
		q.onCommit.Store(nil)
		return
	}
	q.onCommit.Store(&fn)
}

func (q *Queue) committed(id string) {
	if fn := q.onCommit.Load(); fn != nil {
		(*fn)(id)
	}
}
