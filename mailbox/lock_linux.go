package mailbox

import (
	"syscall"
	"time"
)

// fOFDSetLk is F_OFD_SETLK (Linux 3.15+): a record lock owned by the open
// file description.
const fOFDSetLk = 37

// changeTime returns the inode change time of path (Postfix judges a stale
// lock file by its ctime).
func changeTime(path string) (time.Time, bool) {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec)), true
}
