package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// Postfix's long queue IDs (enable_long_queue_ids = yes) decode with
// ParseID to the time the message arrived and the inode number of its
// queue file, and formatID encodes those back to the same string: the
// encoding is Postfix's, digit for digit. The messages are put on hold so
// their queue files stay to be looked at.
func TestLongIDsMatchPostfix(t *testing.T) {
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: `enable_long_queue_ids = yes
smtpd_recipient_restrictions = check_client_access inline:{127.0.0.1=HOLD}, permit_mynetworks, reject
`})
	queuedAs := regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)
	const n = 10
	for i := range n {
		before := time.Now().Add(-time.Second)
		s := pf.Session(t)
		for _, cmd := range []string{"EHLO client.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.org>", "DATA"} {
			if r := s.Cmd(cmd); r.Code >= 400 {
				t.Fatalf("%s: %v", cmd, r)
			}
		}
		r := s.Message(fmt.Sprintf("Subject: %d\n\nbody\n", i))
		s.Close()
		after := time.Now().Add(time.Second)
		m := queuedAs.FindStringSubmatch(fmt.Sprint(r))
		if r.Code != 250 || m == nil {
			t.Fatalf("end of data: %v", r)
		}
		id := m[1]
		if i == 0 {
			t.Logf("Postfix ID %s", id)
		}
		created, ino, err := ParseID(id)
		if err != nil {
			t.Fatalf("Postfix's ID %s: %v", id, err)
		}
		if created.Before(before) || created.After(after) {
			t.Errorf("%s: decodes to %v, outside [%v, %v]", id, created, before, after)
		}
		if back := formatID(created, ino); back != id {
			t.Errorf("%s: decodes to %v and inode %d, which encode as %s", id, created, ino, back)
		}
		fi, err := os.Stat(filepath.Join(pf.QueueDir, "hold", id))
		if err != nil {
			t.Fatalf("the held queue file: %v", err)
		}
		if inodeOf(fi) != ino {
			t.Errorf("%s: inode %d, the file's is %d", id, ino, inodeOf(fi))
		}
		if !ValidID(id) {
			t.Errorf("ValidID(%s) = false", id)
		}
	}
}
