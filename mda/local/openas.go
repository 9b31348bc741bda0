package local

import (
	"os"

	"github.com/postkit-mail/postkit/mda"
)

// openAs opens path with the file system rights of uid and gid (mda.RunAs),
// as Postfix's open_as().
func openAs(path string, flag int, uid, gid int) (f *os.File, err error) {
	if rerr := mda.RunAs(uid, gid, func() { f, err = os.OpenFile(path, flag, 0) }); rerr != nil {
		return nil, rerr
	}
	return f, err
}

// runAs is mda.RunAs.
func runAs(uid, gid int, fn func()) error { return mda.RunAs(uid, gid, fn) }
