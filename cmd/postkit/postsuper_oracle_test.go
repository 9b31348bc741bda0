package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// pfHeld starts a private Postfix that holds mail from hold@example.com
// and queues n such messages; it returns Postfix, the held IDs, and the
// postsuper, postqueue and postcat binaries.
func pfHeld(t *testing.T, n int) (pf *oracle.Postfix, ids []string, ps, pq, pc string) {
	pf = oracle.StartPostfix(t, oracle.PostfixOptions{Main: `enable_long_queue_ids = yes
smtpd_data_restrictions = check_sender_access inline:{hold@example.com=HOLD}
default_transport = smtp
relay_transport = smtp
relayhost = [127.0.0.1]:1
`})
	ps = oracle.Require(t, "postsuper")
	pq = oracle.Require(t, "postqueue")
	pc = oracle.Require(t, "postcat")
	for i := range n {
		s := pf.Session(t)
		for _, c := range []string{"EHLO client.example", "MAIL FROM:<hold@example.com>", "RCPT TO:<r" + string(rune('a'+i)) + "@example.org>", "DATA"} {
			if r := s.Cmd(c); r.Code >= 400 {
				t.Fatalf("%s: %v", c, r)
			}
		}
		if r := s.Message("Subject: held\n\nbody\n"); r.Code != 250 {
			t.Fatalf("end of data: %v", r)
		}
		s.Close()
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err := oracle.Exec(pq, nil, "-c", pf.ConfigDir, "-j")
		if err != nil {
			t.Fatal(err)
		}
		ids = ids[:0]
		for line := range strings.SplitSeq(strings.TrimSpace(string(r.Stdout)), "\n") {
			var m struct {
				QueueName string `json:"queue_name"`
				QueueID   string `json:"queue_id"`
			}
			if json.Unmarshal([]byte(line), &m) == nil && m.QueueName == "hold" {
				ids = append(ids, m.QueueID)
			}
		}
		if len(ids) == n {
			return pf, ids, ps, pq, pc
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix did not hold the messages: %s", r.Stdout)
		}
	}
}

// oursHeld starts a postkit queue system with n held messages.
func oursHeld(t *testing.T, n int) (*qsSystem, []string) {
	sys := startQueueSystem(t)
	var ours []string
	for i := range n {
		ours = append(ours, sys.sendFrom("hold@example.com", true, "r"+string(rune('a'+i))+"@later.example"))
	}
	sys.sync()
	return sys, ours
}

// qcStep is a command line run on both systems; "ID0".."ID9" stand for
// each system's queue IDs.
type qcStep struct {
	prog  string
	args  []string
	stdin string
}

// compareSteps runs each step with Postfix's program and with postkit's
// and compares exit codes, standard output and standard error (IDs
// mapped back to ID0...).
func compareSteps(t *testing.T, pf *oracle.Postfix, bins map[string]string, pfIDs []string, sys *qsSystem, ours []string, steps []qcStep) {
	t.Helper()
	mapIDs := func(args []string, stdin string, ids []string) ([]string, string) {
		out := make([]string, len(args))
		for i, a := range args {
			out[i] = a
			for k, id := range ids {
				out[i] = strings.ReplaceAll(out[i], "ID"+string(rune('0'+k)), id)
			}
		}
		for k, id := range ids {
			stdin = strings.ReplaceAll(stdin, "ID"+string(rune('0'+k)), id)
		}
		return out, stdin
	}
	for _, st := range steps {
		bin := bins[st.prog]
		pargs, pin := mapIDs(st.args, st.stdin, pfIDs)
		want, err := oracle.Exec(bin, []byte(pin), append([]string{"-c", pf.ConfigDir}, pargs...)...)
		if err != nil {
			t.Fatal(err)
		}
		oargs, oin := mapIDs(st.args, st.stdin, ours)
		got := sys.cmd(oin, append([]string{st.prog}, oargs...)...)
		// Postfix prints its program name as invoked (a full path here).
		wantErr := strings.ReplaceAll(string(want.Stderr), filepath.Dir(bin)+"/", "")
		for k := range pfIDs {
			wantErr = strings.ReplaceAll(wantErr, pfIDs[k], "ID"+string(rune('0'+k)))
		}
		gotErr := got.stderr
		for k := range ours {
			gotErr = strings.ReplaceAll(gotErr, ours[k], "ID"+string(rune('0'+k)))
		}
		if got.code != want.Code || gotErr != wantErr || got.stdout != string(want.Stdout) {
			t.Errorf("%s %q:\nPostfix: exit %d, stdout %q, stderr %q\npostkit: exit %d, stdout %q, stderr %q",
				st.prog, st.args, want.Code, want.Stdout, wantErr, got.code, got.stdout, gotErr)
		}
	}
}

// postsuper and postqueue against Postfix 3.7's on the same steps: three
// held messages in each queue, the same command lines (queue IDs mapped
// to each system's), the same report lines, warnings and exit codes.
func TestQueueCommandsMatchPostfix(t *testing.T) {
	pf, pfIDs, ps, pq, pc := pfHeld(t, 3)
	sys, ours := oursHeld(t, 3)

	// postqueue -p of the two queues, with what must differ (IDs, sizes,
	// arrival times, our recipients' domain) replaced.
	entry := regexp.MustCompile(`(?m)^[0-9A-Za-z]+([*!]?) +[0-9]+ [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} `)
	// Postfix lists a queue in directory order: compare the blocks
	// sorted.
	norm := func(s string) string {
		s = strings.ReplaceAll(entry.ReplaceAllString(s, "ID$1 SIZE DATE "), "@later.example", "@example.org")
		head, rest, _ := strings.Cut(s, "\n")
		blocks := strings.Split(rest, "\n\n")
		slices.Sort(blocks[:len(blocks)-1])
		return head + "\n" + strings.Join(blocks, "\n\n")
	}
	want, err := oracle.Exec(pq, nil, "-c", pf.ConfigDir, "-p")
	if err != nil || want.Code != 0 {
		t.Fatalf("postqueue -p: %v %v", err, want)
	}
	got := sys.cmd("", "postqueue", "-p")
	if d := oracle.Diff(norm(string(want.Stdout)), norm(got.stdout)); d != "" || got.code != 0 || !strings.Contains(norm(got.stdout), "ID! SIZE DATE hold@example.com") {
		t.Errorf("postqueue -p differs from Postfix's:\n%s\nPostfix:\n%s\npostkit:\n%s", d, want.Stdout, got.stdout)
	}

	compareSteps(t, pf, map[string]string{"postsuper": ps, "postqueue": pq, "postcat": pc}, pfIDs, sys, ours, []qcStep{
		{"postsuper", []string{"-H", "ALL", "deferred"}, ""},
		{"postsuper", []string{"-d", "NOSUCH", "-e", "NOSUCH", "-h", "NOSUCH", "-r", "NOSUCH", "-H", "NOSUCH", "-f", "NOSUCH"}, ""},
		{"postsuper", []string{"-e", "ID0", "-e", "ID1", "-e", "ID0"}, ""},
		{"postsuper", []string{"-h", "ALL"}, ""},
		{"postsuper", []string{"-d", "bad/id"}, ""},
		{"postsuper", []string{"-d", "all"}, ""},
		{"postsuper", []string{"-d", "ALL", "bogus"}, ""},
		{"postsuper", []string{"-x"}, ""},
		{"postsuper", []string{"-d"}, ""},
		{"postsuper", []string{"-d", "ID0", "-h", "ID1", "-H", "ID2", "-r", "NOSUCH"}, ""},
		{"postsuper", []string{"-d", "-"}, "ID1\nbad.id\n"},
		{"postsuper", []string{"-d", "ALL", "hold"}, ""},
		{"postsuper", []string{"-h", "ID2", "-h", "ID2", "-d", "x:y"}, ""},
		{"postsuper", []string{"-r", "ID2"}, ""},
		{"postsuper", []string{"-H", "ALL"}, ""},
		{"postqueue", []string{"-x"}, ""},
		{"postqueue", []string{"-p", "-f"}, ""},
		{"postqueue", []string{"-i", "NOSUCH"}, ""},
		{"postqueue", []string{"-s", "example.org"}, ""},
		{"postcat", []string{"-q", "NOSUCH"}, ""},
	})
}

// postsuper -e and -f: the marks, the release, the per-message lines and
// the counts as Postfix's. Last steps only: after a release our
// scheduler takes the message at once, Postfix's waits for its next run.
func TestPostsuperExpireMatchesPostfix(t *testing.T) {
	pf, pfIDs, ps, _, _ := pfHeld(t, 2)
	sys, ours := oursHeld(t, 2)
	compareSteps(t, pf, map[string]string{"postsuper": ps}, pfIDs, sys, ours, []qcStep{
		{"postsuper", []string{"-e", "ID0", "-e", "ID0", "-e", "bad/id"}, ""},
		{"postsuper", []string{"-e", "ALL", "deferred"}, ""},
		{"postsuper", []string{"-f", "ID0", "-f", "ID1"}, ""},
	})
}
