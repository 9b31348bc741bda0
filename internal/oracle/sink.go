package oracle

import (
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// StartSMTPSink runs Postfix's smtp-sink on a free loopback port with the
// extra flags (e.g. "-r", "RCPT" for a 4xx to RCPT) and returns its
// address; the sink is stopped when the test ends. It skips the test (fails
// it under CI=true) when smtp-sink is not installed.
func StartSMTPSink(t testing.TB, flags ...string) string {
	t.Helper()
	bin := Require(t, "smtp-sink")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	args := append([]string{}, flags...)
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody") // smtp-sink refuses to run as root
	}
	args = append(args, addr, "256")
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink did not start on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
