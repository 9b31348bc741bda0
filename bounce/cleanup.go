package bounce

// Queueing notices through cleanup with their own queue ID in them.
//
// Postfix's bounce daemon asks cleanup for a queue file first, learns its
// queue ID, and only then writes the notice, so that the notice's
// Received: header and Message-Id carry that ID; it logs
// "ORIGID: sender non-delivery notification: NEWID". A plain Submitter
// only sees finished notices, so Notifier does the same dance with any
// Submitter that is also an Opener: it opens a queue file per notice,
// writes the notices with Settings.NewID handing out those IDs in order,
// then writes and commits each file.

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/postkit-mail/postkit/cleanup"
)

// OpenNotice is a notice's queue file, opened before the notice is
// written: ID is its queue ID, Write takes the notice's content, Commit
// makes it durable, Abort discards it. Exactly one of Commit and Abort
// is called. *cleanup.Message implements it.
type OpenNotice interface {
	ID() string
	io.Writer
	Commit(ctx context.Context) error
	Abort() error
}

// Opener is a Submitter that can open a notice's queue file before the
// notice is written, so that the notice can carry its own queue ID.
// Open gets the notice's envelope (Sender, Recipient, Encoding,
// SMTPUTF8; Data is not final yet). Notifier uses Open instead of Submit
// when its Submitter implements Opener.
type Opener interface {
	Submitter
	Open(ctx context.Context, n *Notice) (OpenNotice, error)
}

// CleanupSubmitter queues notices through a cleanup pipeline, as
// Postfix's bounce daemon hands its notices to cleanup. It implements
// Opener, so a Notifier using it writes each notice's queue ID into its
// Received: header and Message-Id.
type CleanupSubmitter struct {
	Cleanup *cleanup.Cleanup
}

var _ Opener = (*CleanupSubmitter)(nil)

// NewCleanupSubmitter returns a CleanupSubmitter queueing through c.
func NewCleanupSubmitter(c *cleanup.Cleanup) *CleanupSubmitter {
	return &CleanupSubmitter{Cleanup: c}
}

// Open starts the notice's queue file in cleanup. The notice is
// submitted as local mail (Postfix's bounce daemon is an internal
// client, so header addresses are rewritten in the local context).
func (cs *CleanupSubmitter) Open(ctx context.Context, n *Notice) (OpenNotice, error) {
	in := &cleanup.Input{
		Sender:     n.Sender,
		Recipients: []cleanup.Recipient{{Addr: n.Recipient, Original: n.Recipient}},
		Local:      true,
		SMTPUTF8:   n.SMTPUTF8,
	}
	if n.Encoding == Encoding8Bit {
		// So that a notice which bounces in turn is returned with
		// the right labels.
		in.Body = "8BITMIME"
	}
	m, err := cs.Cleanup.Open(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("bounce: opening a queue file for the notice to <%s>: %w", n.Recipient, err)
	}
	return m, nil
}

// Submit queues a finished notice (one written without its own queue
// ID) through cleanup.
func (cs *CleanupSubmitter) Submit(ctx context.Context, n *Notice) error {
	f, err := cs.Open(ctx, n)
	if err != nil {
		return err
	}
	return writeNotice(ctx, f, n)
}

// writeNotice writes n's content to f and commits it, or aborts f.
func writeNotice(ctx context.Context, f OpenNotice, n *Notice) error {
	if _, err := f.Write(n.Data); err != nil {
		f.Abort()
		return fmt.Errorf("bounce: writing the notice %s: %w", f.ID(), err)
	}
	if err := f.Commit(ctx); err != nil {
		return fmt.Errorf("bounce: committing the notice %s: %w", f.ID(), err)
	}
	return nil
}

// notifyOpened writes and queues the notices for m through o: it learns
// which notices m calls for, opens a queue file for each, writes the
// notices again with those queue IDs, and commits them in order. Files
// not committed when an error occurs are aborted; notices already
// committed stay queued (see Notify).
func (nf *Notifier) notifyOpened(ctx context.Context, o Opener, kind Kind, origID string, m *Message, log *slog.Logger) error {
	// A first pass gives the notices' envelopes: the queue file needs
	// them before the content is written.
	plan, err := nf.Settings.Notices(kind, m)
	if err != nil {
		return fmt.Errorf("bounce: writing the %s notice for %s: %w", kind, origID, err)
	}
	if len(plan) == 0 {
		return nil
	}
	files := make([]OpenNotice, 0, len(plan))
	done := 0
	defer func() {
		for _, f := range files[done:] {
			f.Abort()
		}
	}()
	for i := range plan {
		plan[i].Data = nil
		f, err := o.Open(ctx, &plan[i])
		if err != nil {
			return fmt.Errorf("bounce: queueing the %s notice for %s to <%s>: %w", kind, origID, plan[i].Recipient, err)
		}
		files = append(files, f)
	}

	// Settings.Notices calls NewID once per notice, in the order it
	// returns them.
	s := *nf.Settings
	next := 0
	s.NewID = func() string {
		if next >= len(files) {
			return ""
		}
		next++
		return files[next-1].ID()
	}
	notices, err := s.Notices(kind, m)
	if err != nil {
		return fmt.Errorf("bounce: writing the %s notice for %s: %w", kind, origID, err)
	}
	if len(notices) != len(plan) || next != len(plan) {
		return fmt.Errorf("bounce: the %s notices for %s changed while being written", kind, origID)
	}
	for i := range notices {
		n, p := &notices[i], &plan[i]
		if n.Sender != p.Sender || n.Recipient != p.Recipient || n.Encoding != p.Encoding || n.SMTPUTF8 != p.SMTPUTF8 {
			return fmt.Errorf("bounce: the %s notice for %s to <%s> changed while being written", kind, origID, p.Recipient)
		}
	}

	for i := range notices {
		n, f := &notices[i], files[i]
		done = i + 1 // writeNotice commits or aborts f
		if err := writeNotice(ctx, f, n); err != nil {
			return fmt.Errorf("bounce: queueing the %s notice for %s to <%s>: %w", kind, origID, n.Recipient, err)
		}
		log.Info(fmt.Sprintf("%s: %s: %s", origID, noticeLogText(n), f.ID()),
			"queue_id", origID, "notice_id", f.ID())
	}
	return nil
}

// noticeLogText is how Postfix's bounce daemon names a notice in its log
// line "ORIGID: sender non-delivery notification: NEWID".
func noticeLogText(n *Notice) string {
	who := "postmaster"
	if n.Class == "sender" {
		who = "sender"
	}
	switch n.Kind {
	case Delay:
		return who + " delay notification"
	case Success:
		return who + " delivery status notification"
	}
	return who + " non-delivery notification"
}
