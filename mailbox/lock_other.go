//go:build !linux

package mailbox

import (
	"os"
	"syscall"
	"time"
)

const fOFDSetLk = syscall.F_SETLK

// changeTime falls back to the modification time where the ctime field
// is not portable.
func changeTime(path string) (time.Time, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}, false
	}
	return st.ModTime(), true
}
