package mailbox

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a second process (a concurrent deliverer or a
// lock holder) when started with POSTKIT_MAILBOX_HELPER set.
func TestMain(m *testing.M) {
	if mode := os.Getenv("POSTKIT_MAILBOX_HELPER"); mode != "" {
		os.Exit(runHelper(mode, os.Args[len(os.Args)-3:]))
	}
	os.Exit(m.Run())
}

func runHelper(mode string, args []string) int {
	ctx := context.Background()
	path := args[0]
	n, _ := strconv.Atoi(args[1])
	id := args[2]
	switch mode {
	case "deliver-mbox":
		opts := MboxOptions{Create: true, Locks: []string{"dotlock", "fcntl", "flock"}, LockDelay: 5 * time.Millisecond, LockAttempts: 2000}
		if os.Getenv("POSTKIT_MAILBOX_FAST_LOCK") != "" {
			opts.LockAttempts = 3
		}
		for i := 0; i < n; i++ {
			if err := DeliverMbox(ctx, path, "proc@example.com", strings.NewReader(testMessage(id, i)), opts); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	case "deliver-maildir":
		for i := 0; i < n; i++ {
			if _, err := DeliverMaildir(ctx, path, strings.NewReader(testMessage(id, i)), MaildirOptions{}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	case "deliver-big":
		// Big messages to a Maildir (path) and an mbox (path+".mbox"), for
		// the crash test: it is killed at some point.
		for i := 0; ; i++ {
			msg := bigMessage(id, i)
			if _, err := DeliverMaildir(ctx, path, strings.NewReader(msg), MaildirOptions{}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			if err := DeliverMbox(ctx, path+".mbox", "big@example.com", strings.NewReader(msg), MboxOptions{Create: true}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			if i == 0 {
				fmt.Println("delivering")
			}
		}
	case "sync-maildir":
		for i := 0; i < n; i++ {
			md, err := OpenMaildir(ctx, path, MaildirOpenOptions{})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			_ = md
		}
	case "hold-flock", "hold-fcntl":
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if mode == "hold-flock" {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		} else {
			// A classic process-wide POSIX lock, as Postfix and mutt take.
			err = syscall.FcntlFlock(f.Fd(), syscall.F_SETLKW, &syscall.Flock_t{Type: syscall.F_WRLCK})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin) // hold until the test closes stdin
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		return 2
	}
	return 0
}

// testMessage is a message whose every line names its sender and number,
// with lines an mbox writer must quote.
func testMessage(id string, i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Subject: %s %d\nMessage-ID: <%s.%d@test>\n\n", id, i, id, i)
	for l := 0; l < 40; l++ {
		fmt.Fprintf(&b, "line %d of %s %d\n", l, id, i)
		if l%10 == 0 {
			fmt.Fprintf(&b, "From %s %d (needs quoting)\n", id, i)
		}
	}
	return b.String()
}

// bigMessage is a 300 KB message whose last line says it is complete.
func bigMessage(id string, i int) string {
	return fmt.Sprintf("Subject: %s %d\n\n%sEND %s %d\n", id, i, strings.Repeat("0123456789abcdef\n", 300*1024/17), id, i)
}

// startHelper runs the test binary in helper mode.
func startHelper(t *testing.T, mode string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), "POSTKIT_MAILBOX_HELPER="+mode)
	cmd.Stderr = os.Stderr
	return cmd
}

// holdLock starts a process holding a kernel lock on path and returns the
// function that releases it.
func holdLock(t *testing.T, mode, path string) func() {
	t.Helper()
	cmd := startHelper(t, mode, path, "0", "x")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("lock helper: %q %v", line, err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			stdin.Close()
			cmd.Wait()
		}
	}
	t.Cleanup(release)
	return release
}
