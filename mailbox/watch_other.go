//go:build !linux

package mailbox

import "errors"

func newInotify(emit func(Event)) (watcher, error) {
	return nil, errors.New("inotify is not available on this system")
}
