package mailbox

import (
	"os"
	"path/filepath"
	"sync"
	"time"
)

// poller notices changes by comparing modification times and sizes of a
// Maildir's new/ and cur/ directories (or of an mbox file) every interval.
type poller struct {
	emit func(Event)
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	paths map[string]pollState
}

type pollState struct{ newDir, curDir, file stamp }

type stamp struct {
	mod  time.Time
	size int64
	ok   bool
}

func stampOf(path string) stamp {
	st, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{mod: st.ModTime(), size: st.Size(), ok: true}
}

func pollStateOf(path string) pollState {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return pollState{newDir: stampOf(filepath.Join(path, "new")), curDir: stampOf(filepath.Join(path, "cur"))}
	}
	return pollState{file: stampOf(path)}
}

func newPoller(interval time.Duration, emit func(Event)) *poller {
	p := &poller{emit: emit, stop: make(chan struct{}), done: make(chan struct{}), paths: map[string]pollState{}}
	go p.run(interval)
	return p
}

func (p *poller) method() string { return "poll" }

func (p *poller) add(path string) error {
	st := pollStateOf(path)
	p.mu.Lock()
	p.paths[path] = st
	p.mu.Unlock()
	return nil
}

func (p *poller) remove(path string) {
	p.mu.Lock()
	delete(p.paths, path)
	p.mu.Unlock()
}

func (p *poller) close() {
	close(p.stop)
	<-p.done
}

func (p *poller) run(interval time.Duration) {
	defer close(p.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		paths := make([]string, 0, len(p.paths))
		for path := range p.paths {
			paths = append(paths, path)
		}
		p.mu.Unlock()
		for _, path := range paths {
			now := pollStateOf(path)
			p.mu.Lock()
			old, ok := p.paths[path]
			if ok {
				p.paths[path] = now
			}
			p.mu.Unlock()
			if !ok {
				continue
			}
			if now.newDir != old.newDir || now.file != old.file {
				p.emit(Event{Kind: EventNew, Mailbox: path})
			}
			if now.curDir != old.curDir {
				p.emit(Event{Kind: EventFlags, Mailbox: path})
			}
		}
	}
}
