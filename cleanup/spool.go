package cleanup

import (
	"context"
	"fmt"
	"io"
	"os"
)

// spool is a temporary copy of the content, kept when milters or DKIM
// need to read the whole message (and may change it) before it goes to
// the queue file.
type spool struct {
	f       *os.File
	written int64 // bytes that went to the queue file
}

func newSpool(dir string) (*spool, error) {
	f, err := os.CreateTemp(dir, "postkit-cleanup-*")
	if err != nil {
		return nil, fmt.Errorf("cleanup: creating a spool file: %w", err)
	}
	// Unlinked at once: nothing is left behind if the process dies.
	os.Remove(f.Name())
	return &spool{f: f}, nil
}

func (s *spool) close() { s.f.Close() }

// reader returns the spooled content from its start.
func (s *spool) reader() (io.ReadSeeker, error) {
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return s.f, nil
}

// spoolResult is what the milters decided beyond the envelope.
type spoolResult struct {
	discard bool
}

// needSpool: milters or DKIM are configured for this message.
func (m *Message) needSpool() bool {
	return m.milters() != nil || m.c.cfg.DKIM != nil
}

// finishSpool runs the milters and DKIM over the spooled content and
// writes the result to the queue file.
func (m *Message) finishSpool(ctx context.Context, env *Envelope) (spoolResult, error) {
	var res spoolResult
	r, err := m.spool.reader()
	if err != nil {
		return res, fmt.Errorf("cleanup: %s: reading the spool file: %w", m.id, err)
	}
	content := r
	if ms := m.milters(); ms != nil {
		content, res, err = m.runMilters(ctx, ms, env, r)
		if err != nil || res.discard {
			return res, err
		}
	}
	var prefix string
	var body io.Reader = content
	if m.c.cfg.DKIM != nil {
		prefix, body, err = m.runDKIM(ctx, env, content)
		if err != nil {
			return res, err
		}
	}
	cw := &countWriter{w: m.file}
	if _, err := io.WriteString(cw, prefix); err != nil {
		return res, fmt.Errorf("cleanup: %s: writing the queue file: %w", m.id, err)
	}
	if _, err := io.Copy(cw, body); err != nil {
		return res, fmt.Errorf("cleanup: %s: writing the queue file: %w", m.id, err)
	}
	m.spool.written = cw.n
	return res, nil
}
