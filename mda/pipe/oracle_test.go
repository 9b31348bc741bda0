package pipe_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/mda/pipe"
	"github.com/postkit-mail/postkit/queue"
)

// dumpScript is the command of the differential test: it writes its
// argv, working directory, ids, environment and standard input to
// OUT/<first argument>, then behaves as its first argument says.
const dumpScript = `#!/bin/sh
o=OUT/$1
{
echo "argc=$#"
for a in "$@"; do printf 'arg=[%s]\n' "$a"; done
echo "cwd=$(pwd)"
echo "ids=$(id -u) $(id -g) $(id -G)"
env | LC_ALL=C sort | sed 's/^/env=/'
echo "stdin:"
if [ "$1" != noread ]; then cat; fi
} > "$o.tmp"; mv "$o.tmp" "$o"
case "$1" in
okout) echo hello from script;;
exit1) exit 1;;
out1) printf 'line one\nline two\n\n'; exit 1;;
exit75) exit 75;;
out75) echo try later; exit 75;;
exit67) exit 67;;
dsn) echo "4.7.0 custom temporary text"; exit 1;;
dsn5) echo "5.7.1 go away"; exit 75;;
dsn0) echo "5.7.1 go away"; exit 0;;
sig) kill -9 $$;;
sleep) echo sleeping; sleep 10;;
exit99) exit 99;;
nonprint) printf 'a\tb\001c\330\n  x  \n'; exit 1;;
esac
exit 0
`

// TestMatchesPostfix runs the same pipe services in a private Postfix
// and in postkit, with a script that records what it was given, and
// compares the recordings byte for byte and every recipient's dsn,
// status and reason: argv with every macro and flags F R D O . > B h q u,
// per-recipient argument expansion, environment, working directory,
// user and group, exit codes, signals, DSN text in the output and the
// time limit.
func TestMatchesPostfix(t *testing.T) {
	if os.Geteuid() != 0 {
		oracle.Unavailable(t, "the pipe differential needs root (Postfix runs the command as nobody)")
	}
	work, err := os.MkdirTemp("", "gpipe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	out := filepath.Join(work, "out")
	for _, d := range []string{work, out} {
		os.MkdirAll(d, 0o755)
		os.Chmod(d, 0o777)
	}
	script := filepath.Join(work, "dump.sh")
	if err := os.WriteFile(script, []byte(strings.ReplaceAll(dumpScript, "OUT", out)), 0o755); err != nil {
		t.Fatal(err)
	}
	master := fmt.Sprintf("dump unix - n n - - pipe\n"+
		"  flags=FRDO.>Bhqu user=nobody argv=%s ${user} ${sender} ${recipient} {x ${user} y} ${extension} ${domain} ${nexthop} ${mailbox} ${original_recipient} ${size} ${queue_id} ${client_address} ${client_helo} ${client_hostname} ${client_port} ${client_protocol} ${sasl_method} ${sasl_sender} ${sasl_username} $$ $(user) $user\n"+
		"multi unix - n n - - pipe\n  flags=R user=nobody:nogroup argv=%s multi ${recipient} -x{${user}}y ${nexthop} ${extension}\n"+
		"nulls unix - n n - - pipe\n  flags=FRX eol=\\r\\n null_sender= user=nobody argv=%s nulls ${queue_id} ${client_port} <${sender}>\n"+
		"missing unix - n n - - pipe\n  user=nobody argv=/nonexistent/command ${recipient}\n"+
		"small unix - n n - - pipe\n  size=100 user=nobody argv=%s small\n", script, script, script, script)
	main := "mydestination =\nrelay_domains = p.test m.test n.test z.test s.test\ntransport_maps = inline:{p.test=dump:nh.Test, m.test=multi:, n.test=nulls:, z.test=missing:, s.test=small:}\n" +
		"dump_destination_recipient_limit = 1\ndump_time_limit = 2s\nsmtpd_reject_unlisted_recipient = no\nrecipient_delimiter = +\n"
	// The dump_* parameters only once master.cf has the service, or
	// postfix check warns that they are unused.
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: "mydestination =\n"})
	mcf := filepath.Join(p.ConfigDir, "master.cf")
	f, err := os.OpenFile(mcf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(master)
	f.Close()
	oracle.Backdate(t, mcf)
	p.Reconfigure(t, main, nil)

	modes := []string{"ok", "okout", "exit1", "out1", "exit75", "out75", "exit67", "dsn", "dsn5", "dsn0", "sig", "sleep", "exit99", "nonprint", "noread", `"a b"`, "Mixed+Ext"}
	c := p.Session(t)
	c.Cmd("EHLO client.test")
	c.Cmd("MAIL FROM:<Sen.der@X.test>")
	for _, m := range modes {
		if r := c.Cmd("RCPT TO:<" + m + "@P.test>"); !strings.HasPrefix(r.String(), "250") {
			t.Fatalf("RCPT %s: %s", m, r)
		}
	}
	c.Cmd("RCPT TO:<one@m.test>")
	c.Cmd("RCPT TO:<Two+e@M.test>")
	c.Cmd("DATA")
	if r := c.Message("Subject: pipe\r\n\r\nFrom me\r\n.dot\r\n..two\r\nend\r\n"); !strings.HasPrefix(r.String(), "250") {
		t.Fatalf("DATA: %s", r)
	}
	c.Close()
	// A second message, from the null sender, with a Delivered-To for
	// the dump service's loop check.
	second := []string{"loop@P.test", "x@n.test", "x@z.test", "x@s.test"}
	c = p.Session(t)
	c.Cmd("EHLO client.test")
	c.Cmd("MAIL FROM:<>")
	for _, r := range second {
		if rep := c.Cmd("RCPT TO:<" + r + ">"); !strings.HasPrefix(rep.String(), "250") {
			t.Fatalf("RCPT %s: %s", r, rep)
		}
	}
	c.Cmd("DATA")
	if r := c.Message("Delivered-To: Loop@p.test\r\nSubject: second\r\n\r\nbody\r\n"); !strings.HasPrefix(r.String(), "250") {
		t.Fatalf("DATA: %s", r)
	}
	c.Close()

	re := regexp.MustCompile(`postfix/pipe\[\d+\]: \w+: to=<([^>]+)>, relay=(\S+), delay=\S+, delays=\S+, (dsn=.*)$`)
	logged := map[string]string{}
	want := len(modes) + 2 + len(second)
	for deadline := time.Now().Add(40 * time.Second); len(logged) < want; time.Sleep(200 * time.Millisecond) {
		for _, line := range strings.Split(p.Log(), "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				logged[m[1]] = "relay=" + m[2] + ", " + m[3]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix logged %d of %d pipe deliveries:\n%s", len(logged), want, p.Log())
		}
	}
	pfDumps := filepath.Join(work, "postfix")
	if err := os.Rename(out, pfDumps); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(out, 0o777)
	os.Chmod(out, 0o777)

	// What Postfix queued, its queue ID and client port, from the
	// recordings.
	multi, err := os.ReadFile(filepath.Join(pfDumps, "multi"))
	if err != nil {
		t.Fatal(err)
	}
	_, stdin, _ := strings.Cut(string(multi), "stdin:\n")
	_, content, _ := strings.Cut(stdin, "\n") // without Return-Path
	okDump, _ := os.ReadFile(filepath.Join(pfDumps, "ok"))
	args := regexp.MustCompile(`arg=\[(.*)\]`).FindAllStringSubmatch(string(okDump), -1)
	queueID, port := args[10][1], args[14][1]
	portN, _ := strconv.Atoi(port)
	// Each delivery's From_ line has the time Postfix wrote it.
	var when time.Time
	fromTime := func(mode string) {
		data, _ := os.ReadFile(filepath.Join(pfDumps, mode))
		_, stdin, _ := strings.Cut(string(data), "stdin:\n")
		fromLine, _, _ := strings.Cut(stdin, "\n")
		fromLine = strings.TrimSuffix(fromLine, "\r")
		if mode == "noread" {
			return // read nothing
		}
		if len(fromLine) < 24 {
			t.Fatalf("%s: no From_ line in %q", mode, stdin)
		}
		if when, err = time.ParseInLocation("Mon Jan _2 15:04:05 2006", fromLine[len(fromLine)-24:], time.Local); err != nil {
			t.Fatalf("%s: From_ line %q: %v", mode, fromLine, err)
		}
	}

	cfg, err := config.Parse("main.cf", strings.NewReader(main+"queue_directory = "+p.QueueDir+"\nconfig_directory = "+p.ConfigDir+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := mda.ParseMasterCF("master.cf", strings.NewReader(master))
	if err != nil {
		t.Fatal(err)
	}
	agents := map[string]*pipe.Agent{}
	for _, s := range svcs {
		a, err := pipe.New(s, cfg, pipe.Options{Now: func() time.Time { return when }})
		if err != nil {
			t.Fatal(err)
		}
		agents[s.Name] = a
	}
	crlf := strings.ReplaceAll(content, "\n", "\r\n")
	env := &cleanup.Envelope{Sender: "Sen.der@X.test", Client: cleanup.ClientInfo{Addr: "127.0.0.1", Helo: "client.test", Name: "unknown", Port: portN, Proto: "ESMTP"}}
	deliver := func(transport, nexthop string, rcpts ...string) []queue.Result {
		d := &queue.Delivery{QueueID: queueID, Envelope: env, Transport: transport, Nexthop: nexthop, Size: int64(len(crlf)),
			Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(crlf)), nil }}
		for i, r := range rcpts {
			d.Recipients = append(d.Recipients, queue.Recipient{Index: i, Addr: r, Recipient: cleanup.Recipient{Addr: r, Original: r}})
		}
		return agents[transport].Deliver(context.Background(), d)
	}
	words := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	format := func(r queue.Result) string {
		return "relay=" + r.Relay + ", dsn=" + r.DSN + ", status=" + words[r.Outcome] + " (" + r.Reason + ")"
	}
	for _, m := range modes {
		addr := strings.Trim(m, `"`)
		user, _, _ := strings.Cut(strings.ToLower(addr), "+") // the recording's name is ${user}
		fromTime(user)
		quoted := m + "@P.test"
		res := deliver("dump", "nh.Test", addr+"@P.test")
		if got := format(res[0]); got != logged[quoted] {
			t.Errorf("%s:\npostfix: %s\npostkit: %s", quoted, logged[quoted], got)
		}
	}
	// Postfix's queue manager sorted the recipients, and the next hop
	// is the first one's domain.
	res := deliver("multi", "M.test", "Two+e@M.test", "one@m.test")
	for i, a := range []string{"Two+e@M.test", "one@m.test"} {
		if got := format(res[i]); got != logged[a] {
			t.Errorf("%s:\npostfix: %s\npostkit: %s", a, logged[a], got)
		}
	}

	// The second message, as queued, from the nulls recording (flags F
	// and R add two lines; eol=\r\n gives CRLF already).
	nulls, err := os.ReadFile(filepath.Join(pfDumps, "nulls"))
	if err != nil {
		t.Fatal(err)
	}
	nargs := regexp.MustCompile(`arg=\[(.*)\]`).FindAllStringSubmatch(string(nulls), -1)
	_, nstdin, _ := strings.Cut(string(nulls), "stdin:\n")
	nparts := strings.SplitN(nstdin, "\r\n", 3)
	fromTime("nulls")
	port2, _ := strconv.Atoi(nargs[2][1])
	env2 := &cleanup.Envelope{Client: env.Client}
	env2.Client.Port = port2
	for _, r := range second {
		transport := map[string]string{"p.test": "dump", "n.test": "nulls", "z.test": "missing", "s.test": "small"}[strings.ToLower(r[strings.IndexByte(r, '@')+1:])]
		data := nparts[2]
		d := &queue.Delivery{QueueID: nargs[1][1], Envelope: env2, Transport: transport, Nexthop: r[strings.IndexByte(r, '@')+1:], Size: int64(len(data)),
			Recipients: []queue.Recipient{{Addr: r, Recipient: cleanup.Recipient{Addr: r, Original: r}}},
			Open:       func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(data)), nil }}
		if transport == "dump" {
			d.Nexthop = "nh.Test"
		}
		got := format(agents[transport].Deliver(context.Background(), d)[0])
		if got != logged[r] {
			t.Errorf("%s:\npostfix: %s\npostkit: %s", r, logged[r], got)
		}
	}

	names, _ := filepath.Glob(filepath.Join(pfDumps, "*"))
	if len(names) < len(modes) {
		t.Errorf("Postfix left %d recordings", len(names))
	}
	for _, pf := range names {
		name := filepath.Base(pf)
		w, _ := os.ReadFile(pf)
		g, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Errorf("postkit made no recording %s", name)
			continue
		}
		if d := oracle.Diff(string(w), string(g)); d != "" {
			t.Errorf("recording %s differs from Postfix's:\n%s", name, d)
		}
	}
}
