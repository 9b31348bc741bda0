package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/postkit-mail/postkit/queue/control"
)

// startControl serves the queue's control socket (DATA/queue/control),
// through which "postkit postqueue", "postsuper" and "mailq" act on the
// running scheduler. Without -config it also writes the main.cf in use
// to DATA/etc/main.cf, so that "-c DATA/etc" finds the queue.
func (s *server) startControl() error {
	if s.opts.configDir == "" {
		etc := filepath.Join(s.opts.dataDir, "etc")
		if err := os.MkdirAll(etc, 0o700); err != nil {
			return err
		}
		text := "# The built-in configuration of examples/mailserver, written at each start\n" +
			"# for the queue commands (postkit postqueue -c " + etc + ").\n" +
			"# Editing it changes nothing: copy it elsewhere and pass -config DIR.\n" +
			strings.ReplaceAll(builtinMainCF, "@DATA@", s.opts.dataDir)
		if err := writeFileSync(filepath.Join(etc, "main.cf"), []byte(text), 0o600); err != nil {
			return err
		}
	}
	s.ctl = control.NewServer(s.q, s.sched)
	s.ctl.Logger = s.ml.logger("postqueue")
	return s.ctl.Listen(control.SocketPath(s.q.Dir()))
}

func (s *server) stopControl() {
	if s.ctl != nil {
		s.ctl.Close()
	}
}
