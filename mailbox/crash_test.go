package mailbox

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A delivering process killed with SIGKILL at a random point leaves only
// complete messages in new/ (a partial one can only be in tmp/), and the
// next mbox delivery is intact even after a torn one.
func TestDeliverKilled(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "Maildir")
	if err := makeMaildir(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 3; round++ {
		cmd := startHelper(t, "deliver-big", dir, "0", fmt.Sprint("r", round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "delivering\n" {
			t.Fatalf("helper: %q %v", line, err)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		os.Remove(dir + ".mbox.lock") // as stale_lock_time would, later
	}
	names, _ := readNames(filepath.Join(dir, "new"))
	if len(names) < 3 {
		t.Fatalf("%d messages delivered before the kills", len(names))
	}
	for _, n := range names {
		data, _ := os.ReadFile(filepath.Join(dir, "new", n))
		var id string
		var i int
		fmt.Sscanf(string(data), "Subject: %s %d", &id, &i)
		if string(data) != bigMessage(id, i) {
			t.Errorf("new/%s is not a complete message (%d bytes)", n, len(data))
		}
	}
	// The mbox: one more delivery, then every message but a torn one is whole
	// and the last one is ours.
	last := "Subject: after\n\nafter the crash\n"
	if err := DeliverMbox(ctx, dir+".mbox", "a@example.com", strings.NewReader(last), MboxOptions{}); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(dir + ".mbox")
	defer f.Close()
	msgs, err := ScanMbox(f)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(msgs[len(msgs)-1].Reader(f))
	if b.String() != last {
		t.Fatalf("last message %q", b.String())
	}
	torn := 0
	for _, m := range msgs[:len(msgs)-1] {
		b.Reset()
		b.ReadFrom(m.Reader(f))
		var id string
		var i int
		fmt.Sscanf(b.String(), "Subject: %s %d", &id, &i)
		if b.String() != bigMessage(id, i) {
			torn++
		}
	}
	if torn > 3 {
		t.Errorf("%d torn messages from 3 kills", torn)
	}
}
