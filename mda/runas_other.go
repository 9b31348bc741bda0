//go:build !(linux && (amd64 || arm64))

package mda

// RunAs calls fn. Only Linux on amd64 and arm64 switches to the user's
// file system rights (see runas_linux.go); elsewhere the agent's own
// rights apply.
func RunAs(uid, gid int, fn func()) error {
	fn()
	return nil
}
