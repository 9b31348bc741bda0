//go:build linux

package queue

import (
	"os"
	"syscall"
)

// datasync is fdatasync(2): the data and the metadata needed to read it,
// not the times.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

// rename is rename(2) for the commit path's moves. os.Rename would first
// lstat the new name to refuse a directory there, one failing system call
// per message; a queue file's new name is never a directory.
func rename(from, to string) error {
	for {
		err := syscall.Rename(from, to)
		if err != syscall.EINTR {
			if err != nil {
				return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
			}
			return nil
		}
	}
}
