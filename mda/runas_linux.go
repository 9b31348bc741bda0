//go:build linux && (amd64 || arm64)

package mda

import (
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// RunAs calls fn with the file system rights of uid and gid (and gid as
// the only group), as Postfix's set_eugid() before a delivery: home
// mailboxes, /file destinations, .forward and :include: files and virtual
// mailboxes are handled with the user's rights, so that an agent running
// as root neither reads a file for someone who cannot nor follows a
// user's symbolic link into a directory only root may write. fn runs on
// one locked OS thread (setfsuid, setfsgid and setgroups are per thread
// at the system call level) that is discarded afterwards, so no other
// goroutine ever runs with these rights; fn must not hand file work to
// other goroutines. Not running as root, or for uid 0, fn runs as it is.
func RunAs(uid, gid int, fn func()) error {
	if os.Geteuid() != 0 || uid == 0 {
		fn()
		return nil
	}
	done := make(chan error, 1)
	go func() {
		// No UnlockOSThread: the thread ends with this goroutine and never
		// runs other code with the changed rights.
		runtime.LockOSThread()
		groups := []uint32{uint32(gid)}
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETGROUPS, 1, uintptr(unsafe.Pointer(&groups[0])), 0); e != 0 {
			done <- os.NewSyscallError("setgroups", e)
			return
		}
		syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(gid), 0, 0)
		syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0)
		// Both calls return the previous value only: check they took.
		if prev, _, _ := syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0); int(prev) != uid {
			done <- os.NewSyscallError("setfsuid", syscall.EPERM)
			return
		}
		if prev, _, _ := syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(gid), 0, 0); int(prev) != gid {
			done <- os.NewSyscallError("setfsgid", syscall.EPERM)
			return
		}
		defer func() {
			if p := recover(); p != nil {
				done <- panicked{p}
			}
		}()
		fn()
		done <- nil
	}()
	err := <-done
	if p, ok := err.(panicked); ok {
		panic(p.v) // in the caller's goroutine, where it can be recovered
	}
	return err
}

// panicked carries a panic of fn back to RunAs's caller.
type panicked struct{ v any }

func (p panicked) Error() string { return "panic in RunAs" }
