package local

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/queue"
)

var lfMessage = strings.ReplaceAll(testMessage, "\r\n", "\n")

// fromLine matches an mbox From_ line: sender, two spaces, asctime.
var fromLine = regexp.MustCompile(`^From (\S+)  [A-Z][a-z]{2} [A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d \d{4}\n`)

func TestHomeMaildir(t *testing.T) {
	h := newHarness(t, "home_mailbox = Maildir/\n", "")
	res := h.deliver(testMessage, "alice@example.org", "bob@example.net")
	want(t, res[0], queue.Delivered, "2.0.0", "delivered to maildir")
	files := maildirFiles(t, filepath.Join(h.dir, "home/bob/Maildir"))
	if len(files) != 1 {
		t.Fatalf("%d files in new/", len(files))
	}
	exp := "Return-Path: <alice@example.org>\nX-Original-To: bob@example.net\nDelivered-To: bob@example.net\n" + lfMessage
	if files[0] != exp {
		t.Errorf("maildir file:\n%q\nwant\n%q", files[0], exp)
	}
}

func TestSpoolMbox(t *testing.T) {
	h := newHarness(t, "", "")
	for _, sender := range []string{"alice@example.org", ""} {
		res := h.deliver(testMessage, sender, "Bob@Example.NET")
		want(t, res[0], queue.Delivered, "2.0.0", "delivered to mailbox")
	}
	got := read(t, filepath.Join(h.dir, "spool/bob"))
	msgs := strings.SplitAfter(got, "\n\nFrom ")
	if len(msgs) != 2 {
		t.Fatalf("mbox holds %d messages:\n%s", len(msgs), got)
	}
	body := strings.ReplaceAll(lfMessage, "\nFrom here", "\n>From here") + "\n"
	first := fromLine.ReplaceAllString(got, "From SENDER  DATE\n")
	exp := "From SENDER  DATE\nReturn-Path: <alice@example.org>\nX-Original-To: Bob@Example.NET\nDelivered-To: Bob@Example.NET\n" + body +
		"From MAILER-DAEMON  "
	if !strings.HasPrefix(first, exp) {
		t.Errorf("mbox:\n%s\nwant prefix\n%s", first, exp)
	}
	if m := fromLine.FindStringSubmatch(got); m == nil || m[1] != "alice@example.org" {
		t.Errorf("first From_ line: %q", m)
	}
	if !strings.HasSuffix(got, "Return-Path: <>\nX-Original-To: Bob@Example.NET\nDelivered-To: Bob@Example.NET\n"+body) {
		t.Errorf("second message (null sender) wrong:\n%s", got)
	}
}

func TestSpoolMaildirAndHomeMbox(t *testing.T) {
	h := newHarness(t, "mail_spool_directory = {DIR}/spool/\n", "")
	// The harness's mail_spool_directory is replaced by this one.
	h.agent.p.spoolDir = h.dir + "/spool/"
	want(t, h.deliver(testMessage, "a@x", "carol@example.net")[0], queue.Delivered, "2.0.0", "delivered to maildir")
	if n := len(maildirFiles(t, filepath.Join(h.dir, "spool/carol"))); n != 1 {
		t.Errorf("%d files in the spool maildir", n)
	}
	// home_mailbox without '/' still loses against a Maildir spool
	// (Postfix's order); with an mbox spool it wins.
	h.agent.p.homeMailbox = "Mailbox"
	want(t, h.deliver(testMessage, "a@x", "carol@example.net")[0], queue.Delivered, "2.0.0", "delivered to maildir")
	h.agent.p.spoolDir = h.dir + "/spool"
	want(t, h.deliver(testMessage, "a@x", "carol@example.net")[0], queue.Delivered, "2.0.0", "delivered to mailbox")
	if !fromLine.MatchString(read(t, filepath.Join(h.dir, "home/carol/Mailbox"))) {
		t.Error("home mbox has no From_ line")
	}
}

func TestUnknownUser(t *testing.T) {
	h := newHarness(t, "", "")
	res := h.deliver(testMessage, "a@x", "Nosuch+ext@example.net", "postmaster@example.net", "+x@example.net")
	want(t, res[0], queue.Failed, "5.1.1", `unknown user: "nosuch+ext"`)
	want(t, res[1], queue.Delivered, "2.0.0", "discarded")
	// "+x" is not split (the user part would be empty) and is unknown.
	want(t, res[2], queue.Failed, "5.1.1", `unknown user: "+x"`)
	h2 := newHarness(t, "recipient_delimiter = +\n", "")
	want(t, h2.deliver(testMessage, "a@x", "nosuch+ext@example.net")[0], queue.Failed, "5.1.1", `unknown user: "nosuch"`)
}

func TestExtension(t *testing.T) {
	h := newHarness(t, "recipient_delimiter = +-\nhome_mailbox = Maildir/\n", "")
	want(t, h.deliver(testMessage, "a@x", "bob-lists@example.net")[0], queue.Delivered, "2.0.0", "delivered to maildir")
	files := maildirFiles(t, filepath.Join(h.dir, "home/bob/Maildir"))
	if len(files) != 1 || !strings.Contains(files[0], "\nDelivered-To: bob-lists@example.net\n") {
		t.Errorf("files %q", files)
	}
	// An extension with '/' is dropped, the user still gets the mail.
	want(t, h.deliver(testMessage, "a@x", "bob+a/b@example.net")[0], queue.Delivered, "2.0.0", "delivered to maildir")
	if !strings.Contains(h.logs.String(), "address with illegal extension: bob+a/b") {
		t.Errorf("no warning for the illegal extension:\n%s", h.logs)
	}
}

func TestDeliveredToLoop(t *testing.T) {
	h := newHarness(t, "", "")
	msg := "Delivered-To: bob@example.net\r\n" + testMessage
	res := h.deliver(msg, "a@x", "bob@example.net", "carol@example.net")
	want(t, res[0], queue.Failed, "5.4.6", "mail forwarding loop for bob@example.net")
	want(t, res[1], queue.Delivered, "2.0.0", "delivered to mailbox")
	if _, err := os.Stat(filepath.Join(h.dir, "spool/bob")); err == nil {
		t.Error("looping message was delivered")
	}
}

func TestAliases(t *testing.T) {
	aliases := `# test aliases
team: bob, carol,
	remote@far.example
tofile: {DIR}/files/archive
todir: {DIR}/files/maildir/
devnull: /dev/null
tocmd: "|cat > {DIR}/files/cmd.out"
incl: :include:{DIR}/files/list
self: self, /dev/null
`
	h := newHarness(t, "home_mailbox = Maildir/\n", aliases)
	writeFile(t, filepath.Join(h.dir, "files/list"), "# list members\ndave\nother@far.example\n", 0o644)
	res := h.deliver(testMessage, "alice@example.org",
		"team@example.net", "tofile@example.net", "todir@example.net", "devnull@example.net",
		"tocmd@example.net", "incl@example.net")
	// team: two local mailboxes and one forwarded copy.
	if res[0].Outcome != queue.Delivered || res[0].DSN != "2.0.0" || res[0].Reason != "delivered to maildir" {
		t.Errorf("team: %+v", res[0])
	}
	for _, u := range []string{"bob", "carol"} {
		files := maildirFiles(t, filepath.Join(h.dir, "home", u, "Maildir"))
		if len(files) != 1 {
			t.Fatalf("%s has %d messages", u, len(files))
		}
		// Delivered-To is frozen at the queue recipient (frozen_delivered_to).
		exp := "Return-Path: <alice@example.org>\nX-Original-To: team@example.net\nDelivered-To: team@example.net\n" + lfMessage
		if files[0] != exp {
			t.Errorf("%s got\n%q", u, files[0])
		}
	}
	want(t, res[1], queue.Delivered, "2.0.0", "delivered to file: "+h.dir+"/files/archive")
	archive := read(t, h.dir+"/files/archive")
	if !fromLine.MatchString(archive) || !strings.Contains(archive, "\nDelivered-To: tofile@example.net\n") ||
		!strings.HasSuffix(archive, ">From stays.\n\n") || !strings.Contains(archive, "\n>From here") {
		t.Errorf("archive:\n%s", archive)
	}
	want(t, res[2], queue.Delivered, "2.0.0", "delivered to maildir")
	if n := len(maildirFiles(t, h.dir+"/files/maildir")); n != 1 {
		t.Errorf("alias maildir has %d files", n)
	}
	want(t, res[3], queue.Delivered, "2.0.0", "delivered to file: /dev/null")
	want(t, res[4], queue.Delivered, "2.0.0", "delivered to command: cat > "+h.dir+"/files/cmd.out")
	cmdOut := read(t, h.dir+"/files/cmd.out")
	if m := fromLine.FindStringSubmatch(cmdOut); m == nil || m[1] != "alice@example.org" {
		t.Errorf("command input has no From_ line:\n%s", cmdOut)
	}
	expCmd := "Return-Path: <alice@example.org>\nX-Original-To: tocmd@example.net\nDelivered-To: tocmd@example.net\n" + lfMessage
	if got := fromLine.ReplaceAllString(cmdOut, ""); got != expCmd {
		t.Errorf("command input (no >From quoting, no blank line):\n%q\nwant\n%q", got, expCmd)
	}
	// :include: addresses are always forwarded, even local ones.
	if !strings.HasPrefix(res[5].Reason, "forwarded as ") || res[5].Outcome != queue.Delivered {
		t.Errorf("incl: %+v", res[5])
	}
	q := h.queued()
	if len(q) != 2 {
		t.Fatalf("%d forwarded messages, want 2", len(q))
	}
	byRcpt := map[string]queuedMsg{}
	for _, m := range q {
		byRcpt[m.rcpts()] = m
	}
	fw, ok := byRcpt["remote@far.example"]
	if !ok {
		t.Fatalf("forwarded: %v", byRcpt)
	}
	if fw.env.Sender != "alice@example.org" || fw.env.Recipients[0].Original != "team@example.net" {
		t.Errorf("forwarded envelope %+v", fw.env)
	}
	if !strings.HasPrefix(fw.data, "Delivered-To: team@example.net\r\n") {
		t.Errorf("forwarded copy does not start with Delivered-To:\n%s", fw.data)
	}
	if !strings.Contains(h.logs.String(), "forwarded as "+fw.id) {
		t.Errorf("no 'forwarded as' log line:\n%s", h.logs)
	}
	inc, ok := byRcpt["dave@example.net,other@far.example"]
	if !ok || "forwarded as "+inc.id != res[5].Reason {
		t.Errorf("include forward: %v, reason %q", byRcpt, res[5].Reason)
	}
	// An alias that lists itself delivers to the user of that name:
	// there is none, so that part bounces.
	res = h.deliver(testMessage, "a@x", "self@example.net")
	want(t, res[0], queue.Failed, "5.1.1", `unknown user: "self"`)
}

func TestAliasSelfToMailbox(t *testing.T) {
	h := newHarness(t, "", "bob: bob, {DIR}/files/copy\n")
	res := h.deliver(testMessage, "a@x", "bob@example.net")
	want(t, res[0], queue.Delivered, "2.0.0", "delivered to mailbox")
	if !fromLine.MatchString(read(t, h.dir+"/spool/bob")) || !fromLine.MatchString(read(t, h.dir+"/files/copy")) {
		t.Error("missing mailbox or file copy")
	}
}

func TestOwnerAlias(t *testing.T) {
	h := newHarness(t, "", "list: bob, far@remote.example\nowner-list: admin\n")
	d := delivery(testMessage, "alice@example.org", "list@example.net")
	d.Envelope.EnvID, d.Envelope.Ret = "ENV1", "HDRS"
	d.Recipients[0].Notify = []string{"SUCCESS", "FAILURE"}
	res := h.agent.Deliver(t.Context(), d)
	if !strings.HasPrefix(res[0].Reason, "forwarded as ") {
		t.Fatalf("list: %+v", res[0])
	}
	q := h.queued()
	if len(q) != 1 {
		t.Fatalf("%d queued", len(q))
	}
	env := q[0].env
	// With an owner- alias every member is resubmitted with the owner as
	// sender, and ENVID, RET, ORCPT and the original recipient are dropped.
	if env.Sender != "owner-list@example.net" || q[0].rcpts() != "bob@example.net,far@remote.example" {
		t.Errorf("envelope: sender %q rcpts %q", env.Sender, q[0].rcpts())
	}
	if env.EnvID != "" || env.Ret != "" || env.Recipients[0].Original == "list@example.net" {
		t.Errorf("DSN attributes propagated: %+v", env)
	}
	if strings.Join(env.Recipients[0].Notify, ",") != "FAILURE" {
		t.Errorf("NOTIFY = %v, want FAILURE (SUCCESS is never propagated)", env.Recipients[0].Notify)
	}
	if _, err := os.Stat(h.dir + "/spool/bob"); err == nil {
		t.Error("bob got a direct delivery")
	}
}

func TestAliasLoops(t *testing.T) {
	h := newHarness(t, "", "a: b\nb: a\nempty: \"\"\n")
	res := h.deliver(testMessage, "x@y", "a@example.net")
	if res[0].Outcome != queue.Failed || res[0].DSN != "5.4.6" {
		t.Errorf("alias loop: %+v", res[0])
	}
	if !strings.Contains(h.logs.String(), "loop") && !strings.Contains(h.logs.String(), "nesting limit") {
		t.Errorf("no loop warning logged:\n%s", h.logs)
	}
}

func TestRestrictedDestinations(t *testing.T) {
	h := newHarness(t, "allow_mail_to_commands = alias\nallow_mail_to_files = forward\n", `
cmd: "|cat >/dev/null"
file: {DIR}/files/f
incl: :include:{DIR}/files/inc
`)
	writeFile(t, h.dir+"/files/inc", "\"|cat >/dev/null\"\n", 0o644)
	res := h.deliver(testMessage, "x@y", "cmd@example.net", "file@example.net", "incl@example.net")
	want(t, res[0], queue.Delivered, "2.0.0", "delivered to command: cat >/dev/null")
	want(t, res[1], queue.Failed, "5.7.1", "mail to file is restricted")
	want(t, res[2], queue.Failed, "5.7.1", "mail to command is restricted")
}

func TestDotForward(t *testing.T) {
	h := newHarness(t, "recipient_delimiter = +\nhome_mailbox = Maildir/\n", "")
	home := h.dir + "/home/bob"
	writeFile(t, home+"/.forward", "# keep a copy\nbob, elsewhere@far.example\n", 0o644)
	writeFile(t, home+"/.forward+lists", h.dir+"/files/lists\n", 0o644)
	res := h.deliver(testMessage, "a@x", "bob@example.net", "bob+lists@example.net")
	if res[0].Outcome != queue.Delivered {
		t.Errorf("bob: %+v", res[0])
	}
	want(t, res[1], queue.Delivered, "2.0.0", "delivered to file: "+h.dir+"/files/lists")
	if n := len(maildirFiles(t, home+"/Maildir")); n != 1 {
		t.Errorf("bob's own copy: %d files", n)
	}
	q := h.queued()
	if len(q) != 1 || q[0].rcpts() != "elsewhere@far.example" {
		t.Fatalf("forwarded: %+v", q)
	}
	// A world-writable .forward is ignored with a warning: plain delivery.
	writeFile(t, h.dir+"/home/carol/.forward", "somewhere@far.example\n", 0o666)
	want(t, h.deliver(testMessage, "a@x", "carol@example.net")[0], queue.Delivered, "2.0.0", "delivered to maildir")
	if !strings.Contains(h.logs.String(), "is world writable") {
		t.Errorf("no warning:\n%s", h.logs)
	}
	// An empty .forward means normal delivery.
	writeFile(t, h.dir+"/home/dave/.forward", "# nothing\n", 0o644)
	want(t, h.deliver(testMessage, "a@x", "dave@example.net")[0], queue.Delivered, "2.0.0", "delivered to maildir")
}

func TestHomeMissing(t *testing.T) {
	h := newHarness(t, "", "")
	if err := os.RemoveAll(h.dir + "/home/dave"); err != nil {
		t.Fatal(err)
	}
	want(t, h.deliver(testMessage, "a@x", "dave@example.net")[0], queue.Delayed, "4.3.0",
		"cannot access home directory "+h.dir+"/home/dave: No such file or directory")
}

func TestLuserRelay(t *testing.T) {
	h := newHarness(t, "luser_relay = admin+$local\nrecipient_delimiter = +\n", "")
	want(t, h.deliver(testMessage, "a@x", "who@example.net")[0], queue.Delivered, "2.0.0", "delivered to mailbox")
	if !strings.Contains(read(t, h.dir+"/spool/admin"), "\nDelivered-To: who@example.net\n") {
		t.Error("admin did not get the message")
	}
	h2 := newHarness(t, "luser_relay = $user@relay.example\n", "")
	r := h2.deliver(testMessage, "a@x", "who@example.net")[0]
	if !strings.HasPrefix(r.Reason, "forwarded as ") {
		t.Fatalf("%+v", r)
	}
	if q := h2.queued(); len(q) != 1 || q[0].rcpts() != "who@relay.example" {
		t.Errorf("queued %+v", q)
	}
}

func TestMailboxCommand(t *testing.T) {
	h := newHarness(t, `mailbox_command = /bin/sh -c 'cat > "$HOME/mc.out"; echo "$RECIPIENT $LOCAL $EXTENSION $SENDER $USER" > "$HOME/env.out"'`+"\nrecipient_delimiter = +\n", "")
	r := h.deliver(testMessage, "a@x", "bob+tag@example.net")[0]
	want(t, r, queue.Delivered, "2.0.0", "delivered to command: "+h.agent.p.mailboxCommand)
	if got := read(t, h.dir+"/home/bob/env.out"); got != "bob+tag@example.net bob+tag tag a@x bob\n" {
		t.Errorf("environment: %q", got)
	}
	if !strings.HasSuffix(read(t, h.dir+"/home/bob/mc.out"), "Delivered-To: bob+tag@example.net\n"+lfMessage) {
		t.Error("command input")
	}
}

func TestCommandStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "command_time_limit = 1s\n", `
ok: "|exit 0"
tempfail: "|exit 75"
nouser: "|exit 67"
died: "|echo oops; exit 1"
dsn: "|echo 4.2.2 mailbox is full; exit 1"
dsn5: "|echo 5.7.1 go away; exit 0; "
slow: "|sleep 30"
output: "|printf 'line one\\nline two\\n'; exit 69"
signal: "|kill -9 $$"
`)
	start := time.Now()
	res := h.deliver(testMessage, "a@x", "ok@example.net", "tempfail@example.net", "nouser@example.net",
		"died@example.net", "dsn@example.net", "slow@example.net", "output@example.net", "signal@example.net")
	want(t, res[0], queue.Delivered, "2.0.0", "delivered to command: exit 0")
	want(t, res[1], queue.Delayed, "4.3.0", "temporary failure")
	want(t, res[2], queue.Failed, "5.1.1", "user unknown")
	// Postfix keeps the newline of the output as a trailing space
	// (checked by TestMatchesPostfix).
	want(t, res[3], queue.Failed, "5.3.0", `Command died with status 1: "echo oops; exit 1". Command output: oops `)
	want(t, res[4], queue.Delayed, "4.2.2", "mailbox is full ")
	want(t, res[5], queue.Failed, "5.3.0", `Command time limit exceeded: "sleep 30"`)
	want(t, res[6], queue.Failed, "5.3.0", "service unavailable. Command output: line one line two ")
	want(t, res[7], queue.Delayed, "4.3.0", `Command died with signal 9: "kill -9 $$"`)
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("command_time_limit not enforced: %v", d)
	}
}

func TestMailboxSizeLimit(t *testing.T) {
	h := newHarness(t, fmt.Sprintf("mailbox_size_limit = %d\nmessage_size_limit = %d\n", 400, 400), "")
	want(t, h.deliver(testMessage, "a@x", "bob@example.net")[0], queue.Delivered, "2.0.0", "delivered to mailbox")
	before := read(t, h.dir+"/spool/bob")
	path := h.dir + "/spool/bob"
	want(t, h.deliver(testMessage, "a@x", "bob@example.net")[0], queue.Failed, "5.2.2",
		"cannot update mailbox "+path+" for user bob. error writing message: File too large")
	if after := read(t, path); after != before {
		t.Errorf("mailbox changed by the failed delivery: %d -> %d bytes", len(before), len(after))
	}
	// Maildir: the limit is per file.
	h2 := newHarness(t, "home_mailbox = Maildir/\nmailbox_size_limit = 100\nmessage_size_limit = 100\n", "")
	want(t, h2.deliver(testMessage, "a@x", "bob@example.net")[0], queue.Failed, "5.2.2",
		"maildir delivery failed: error writing message: File too large")
}

func TestMailboxLock(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "deliver_lock_attempts = 2\ndeliver_lock_delay = 1s\nmailbox_delivery_lock = dotlock\n", "")
	path := h.dir + "/spool/bob"
	writeFile(t, path+".lock", "", 0o600)
	r := h.deliver(testMessage, "a@x", "bob@example.net")[0]
	want(t, r, queue.Delayed, "4.2.0", "cannot update mailbox "+path+" for user bob. unable to create lock file "+path+".lock: File exists")
	os.Remove(path + ".lock")
	// flock: another open file description holds the lock.
	h.agent.p.locks = []string{"flock"}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if uid, gid := testIDs(); os.Geteuid() == 0 {
		f.Chown(uid, gid)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	want(t, h.deliver(testMessage, "a@x", "bob@example.net")[0], queue.Delayed, "4.2.0",
		"cannot update mailbox "+path+" for user bob. unable to lock for exclusive access: Resource temporarily unavailable")
	f.Close()
	want(t, h.deliver(testMessage, "a@x", "bob@example.net")[0], queue.Delivered, "2.0.0", "delivered to mailbox")
}

func TestDuplicateRecipients(t *testing.T) {
	h := newHarness(t, "", "a1: bob\na2: bob\n")
	res := h.deliver(testMessage, "x@y", "a1@example.net", "a2@example.net")
	for _, r := range res {
		if r.Outcome != queue.Delivered {
			t.Errorf("%+v", r)
		}
	}
	if n := strings.Count(read(t, h.dir+"/spool/bob"), "\nReturn-Path: "); n != 1 {
		t.Errorf("bob got %d copies, want 1", n)
	}
}

func TestDuplicateUnknown(t *testing.T) {
	h := newHarness(t, "recipient_delimiter = +\n", "")
	res := h.deliver(testMessage, "x@y", "nosuch@example.net", "nosuch+a@example.net", "bob@example.net", "bob+b@example.net")
	want(t, res[0], queue.Failed, "5.1.1", `unknown user: "nosuch"`)
	want(t, res[1], queue.Failed, "5.1.1", `unknown user: "nosuch"`)
	want(t, res[2], queue.Delivered, "2.0.0", "delivered to mailbox")
	want(t, res[3], queue.Delivered, "2.0.0", "delivered to mailbox")
	if n := strings.Count(read(t, h.dir+"/spool/bob"), "\nReturn-Path: "); n != 2 {
		t.Errorf("bob got %d copies, want 2 (bob and bob+b are different recipients)", n)
	}
}

func TestNoResubmitter(t *testing.T) {
	h := newHarness(t, "", "fwd: x@far.example\n")
	h.agent.resub = nil
	r := h.deliver(testMessage, "a@x", "fwd@example.net")[0]
	if r.Outcome != queue.Delayed || r.DSN != "4.3.0" {
		t.Errorf("%+v", r)
	}
}

func TestFromConfigErrors(t *testing.T) {
	for _, main := range []string{
		"mailbox_transport = lmtp:unix:/x\n",
		"allow_mail_to_files = bogus\n",
		"mailbox_delivery_lock = nolock\n",
		"prepend_delivered_header = nope\n",
		"mailbox_size_limit = 1000\nmessage_size_limit = 2000\n",
	} {
		t.Run(main, func(t *testing.T) {
			if _, err := fromMain(t, main); err == nil {
				t.Errorf("%q: no error", main)
			}
		})
	}
}

func TestCommandDirectoryAndEnvironment(t *testing.T) {
	h := newHarness(t, "command_execution_directory = {DIR}/files\nexport_environment = TZ LANG\n",
		"pwd: \"|pwd > {DIR}/files/pwd.out; umask > {DIR}/files/umask.out; echo \\\"$PATH $TZ\\\" > {DIR}/files/env.out\"\n")
	t.Setenv("TZ", "Europe/Berlin")
	want(t, h.deliver(testMessage, "a@x", "pwd@example.net")[0], queue.Delivered, "2.0.0",
		"delivered to command: pwd > "+h.dir+"/files/pwd.out; umask > "+h.dir+"/files/umask.out; echo \"$PATH $TZ\" > "+h.dir+"/files/env.out")
	if got := read(t, h.dir+"/files/pwd.out"); got != h.dir+"/files\n" {
		t.Errorf("working directory %q", got)
	}
	if got := strings.TrimSpace(read(t, h.dir+"/files/umask.out")); got != "0077" {
		t.Errorf("umask %q", got)
	}
	if got := read(t, h.dir+"/files/env.out"); got != "/usr/bin:/bin Europe/Berlin\n" {
		t.Errorf("PATH and TZ: %q", got)
	}
}

func TestExpandOwnerAliasAndForwardHeader(t *testing.T) {
	h := newHarness(t, "expand_owner_alias = yes\nprepend_delivered_header = command, file\n",
		"list: far@remote.example\nowner-list: listadmin@other.example\n")
	r := h.deliver(testMessage, "a@x", "list@example.net")[0]
	if !strings.HasPrefix(r.Reason, "forwarded as ") {
		t.Fatalf("%+v", r)
	}
	q := h.queued()
	if len(q) != 1 || q[0].env.Sender != "listadmin@other.example" {
		t.Fatalf("queued %+v", q)
	}
	if strings.Contains(q[0].data, "Delivered-To:") {
		t.Errorf("forwarded copy has Delivered-To without 'forward' in prepend_delivered_header:\n%s", q[0].data)
	}
}

func TestAliasTableMissing(t *testing.T) {
	h := newHarness(t, "alias_maps = hash:{DIR}/nosuch\n", "")
	r := h.deliver(testMessage, "a@x", "bob@example.net")[0]
	want(t, r, queue.Delayed, "4.3.0", "alias database unavailable")
	if !strings.Contains(h.logs.String(), "cannot open hash:"+h.dir+"/nosuch") {
		t.Errorf("no warning:\n%s", h.logs)
	}
}

func TestOwnershipChecks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to other users (the unprivileged run is TestUnprivileged)")
	}
	h := newHarness(t, "", "")
	// A mailbox that is not the recipient's: strict_mailbox_ownership.
	path := h.dir + "/spool/bob"
	writeFile(t, path, "", 0o600)
	want(t, h.deliver(testMessage, "a@x", "bob@example.net")[0], queue.Delayed, "4.2.0",
		"cannot update mailbox "+path+" for user bob. destination "+path+" is not owned by recipient")
	h.agent.p.strictOwnership = false
	want(t, h.deliver(testMessage, "a@x", "bob@example.net")[0], queue.Delivered, "2.0.0", "delivered to mailbox")
	// A .forward owned by someone else is ignored.
	fwd := h.dir + "/home/carol/.forward"
	writeFile(t, fwd, "elsewhere@far.example\n", 0o644)
	if err := os.Chown(fwd, 1, 1); err != nil {
		t.Fatal(err)
	}
	want(t, h.deliver(testMessage, "a@x", "carol@example.net")[0], queue.Delivered, "2.0.0", "delivered to mailbox")
	if !strings.Contains(h.logs.String(), "file "+fwd+" has bad owner uid 1") {
		t.Errorf("no warning:\n%s", h.logs)
	}
	// A mailbox that is not a regular file.
	if err := os.Mkdir(h.dir+"/spool/dave", 0o700); err != nil {
		t.Fatal(err)
	}
	want(t, h.deliver(testMessage, "a@x", "dave@example.net")[0], queue.Failed, "5.2.0",
		"cannot update mailbox "+h.dir+"/spool/dave for user dave. cannot open file: Is a directory")
	// Other files that are not regular (checked after the open).
	if err := syscall.Mkfifo(h.dir+"/spool/admin", 0o600); err != nil {
		t.Fatal(err)
	}
	want(t, h.deliver(testMessage, "a@x", "admin@example.net")[0], queue.Failed, "5.2.0",
		"cannot update mailbox "+h.dir+"/spool/admin for user admin. destination "+h.dir+"/spool/admin is not a regular file")
}

func TestPropagateUnmatchedExtensions(t *testing.T) {
	for _, c := range []struct{ prop, want string }{
		{"canonical, virtual", "far@remote.example"},
		{"alias", "far+tag@remote.example"},
	} {
		h := newHarness(t, "recipient_delimiter = +\npropagate_unmatched_extensions = "+c.prop+"\n", "team: far@remote.example\n")
		r := h.deliver(testMessage, "a@x", "team+tag@example.net")[0]
		if !strings.HasPrefix(r.Reason, "forwarded as ") {
			t.Fatalf("%s: %+v", c.prop, r)
		}
		if q := h.queued(); len(q) != 1 || q[0].rcpts() != c.want {
			t.Errorf("%s: forwarded to %v, want %s", c.prop, q, c.want)
		}
	}
	// .forward: the extension reaches the forwarded address only with
	// "forward" in the list, and never when .forward+ext was used.
	for _, c := range []struct{ prop, want string }{
		{"canonical", "elsewhere@far.example"},
		{"forward", "elsewhere+news@far.example"},
	} {
		h := newHarness(t, "recipient_delimiter = +\npropagate_unmatched_extensions = "+c.prop+"\n", "")
		writeFile(t, h.dir+"/home/bob/.forward", "elsewhere@far.example\n", 0o644)
		if uid, gid := testIDs(); os.Geteuid() == 0 {
			os.Chown(h.dir+"/home/bob/.forward", uid, gid)
		}
		h.deliver(testMessage, "a@x", "bob+news@example.net")
		if q := h.queued(); len(q) != 1 || q[0].rcpts() != c.want {
			t.Errorf("%s: forwarded to %+v, want %s", c.prop, q, c.want)
		}
	}
}
