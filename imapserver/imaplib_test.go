package imapserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/mailbox"
)

func testMsg(i int, subj string) string {
	return fmt.Sprintf("From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"+
		"Subject: %s\r\nDate: Mon, 2 Mar 2026 10:0%d:00 +0100\r\n"+
		"Message-ID: <m%d@example.org>\r\n\r\nbody number %d\r\nline two\r\n", subj, i, i, i)
}

func TestImaplibSession(t *testing.T) {
	e := newEnv(t)
	_, addr := e.start(t, e.options())
	res := runClient(t, addr, "full", nil)

	if caps := one(t, res, "caps"); !strings.Contains(caps, "IMAP4REV1") {
		t.Errorf("caps %q", caps)
	}
	list := strings.Join(res["list"], "\n")
	for _, want := range []string{`\Drafts) "." "Drafts"`, `\Sent) "." "Sent"`, `\Trash) "." "Trash"`, `\Junk) "." "Junk"`, `"." INBOX`} {
		if !strings.Contains(list, want) {
			t.Errorf("LIST lacks %q:\n%s", want, list)
		}
	}
	if lsub := strings.Join(res["lsub"], "\n"); !strings.Contains(lsub, `"." "Work"`) || !strings.Contains(lsub, `"." "Sent"`) {
		t.Errorf("LSUB:\n%s", lsub)
	}
	for i, a := range res["append"] {
		if !regexp.MustCompile(fmt.Sprintf(`^\[APPENDUID \d+ %d\]`, i+1)).MatchString(a) {
			t.Errorf("APPEND %d: %q", i, a)
		}
	}
	if got := one(t, res, "exists"); got != "3" {
		t.Errorf("SELECT EXISTS %q", got)
	}
	fetch := res["fetch"]
	if len(fetch) != 3 {
		t.Fatalf("FETCH 1:* gave %q", fetch)
	}
	for i, subj := range []string{"first", "second", "third"} {
		want := fmt.Sprintf(`%d (UID %d `, i+1, i+1)
		if !strings.HasPrefix(fetch[i], want) || !strings.Contains(fetch[i], fmt.Sprintf("RFC822.SIZE %d ", len(testMsg(i, subj)))) ||
			!strings.Contains(fetch[i], `"`+subj+`"`) || !strings.Contains(fetch[i], `(("Alice" NIL "alice" "example.org"))`) {
			t.Errorf("FETCH %d: %s", i+1, fetch[i])
		}
	}
	if !strings.Contains(fetch[1], `FLAGS (\Flagged`) {
		t.Errorf("APPEND flags lost: %s", fetch[1])
	}
	wantSections := []string{`b'Subject: second\r\n\r\n'`, `b'body number 1\r\nline two\r\n'`, `b'body'`}
	if got := res["section"]; strings.Join(got, "|") != strings.Join(wantSections, "|") {
		t.Errorf("sections %q, want %q", got, wantSections)
	}
	if got, want := one(t, res, "rfc822"), fmt.Sprintf("b%q", testMsg(0, "first")); strings.ReplaceAll(got, "'", `"`) != want {
		t.Errorf("BODY[] = %s, want %s", got, want)
	}
	if got := one(t, res, "seenafter"); !strings.Contains(got, `\Seen`) {
		t.Errorf("BODY[] did not set \\Seen: %s", got)
	}
	if got := one(t, res, "bodystructure"); !strings.Contains(got, `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 25 2`) {
		t.Errorf("BODYSTRUCTURE %s", got)
	}
	if got := one(t, res, "flags3"); !strings.Contains(got, `\Answered`) || !strings.Contains(got, `$Important`) {
		t.Errorf("STORE: %s", got)
	}
	for k, want := range map[string]string{
		"search_flagged": "2", "search_unseen": "3", "search_subject": "3", "search_body": "2",
		"search_or": "1 3", "search_uid": "2 3", "search_sent": "1 2 3", "search_charset": "1 2 3",
	} {
		if got := one(t, res, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := one(t, res, "copyuid"); !regexp.MustCompile(`COPYUID', \[b'\d+ 1:2 1:2'\]`).MatchString(got) {
		t.Errorf("COPYUID: %s", got)
	}
	if got := one(t, res, "move"); got != "OK" {
		t.Errorf("MOVE: %s", got)
	}
	if got := one(t, res, "status_work"); !strings.Contains(got, "MESSAGES 2") || !strings.Contains(got, "UIDNEXT 3") {
		t.Errorf("STATUS Work: %s", got)
	}
	if got := one(t, res, "status_proj"); !strings.Contains(got, "MESSAGES 1") {
		t.Errorf("STATUS Work.Projects: %s", got)
	}
	// imaplib collects MOVE's "* 3 EXPUNGE" too
	if got := one(t, res, "expunge"); got != "[b'3', b'1']" {
		t.Errorf("EXPUNGE: %s", got)
	}
	if got := one(t, res, "exists_after"); got != "1" {
		t.Errorf("EXISTS after expunge: %s", got)
	}
	list2 := strings.Join(res["list2"], "\n")
	for _, want := range []string{`"." "Archive"`, `"." "Archive.Projects"`, `"." "Caf&AOk-"`} {
		if !strings.Contains(list2, want) {
			t.Errorf("LIST after RENAME lacks %q:\n%s", want, list2)
		}
	}
	if strings.Contains(list2, `"." "Work"`) {
		t.Errorf("Work still listed after RENAME:\n%s", list2)
	}
	if one(t, res, "create_bad") != "NO" || one(t, res, "select_missing") != "NO" {
		t.Errorf("bad name / missing mailbox: %v %v", res["create_bad"], res["select_missing"])
	}

	// On disk: Maildir++ folders, LF line ends, Maildir flags.
	root := filepath.Join(e.home, "Maildir")
	for _, d := range []string{".Archive", ".Archive.Projects", ".Caf&AOk-", ".Drafts", ".Sent", ".Trash", ".Junk"} {
		if st, err := os.Stat(filepath.Join(root, d, "cur")); err != nil || !st.IsDir() {
			t.Errorf("folder %s: %v", d, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(root, "cur", "*"))
	if len(files) != 1 {
		t.Fatalf("INBOX files %v", files)
	}
	data, _ := os.ReadFile(files[0])
	if strings.Contains(string(data), "\r") || !strings.HasSuffix(files[0], ":2,FS") {
		t.Errorf("stored %s: %q", files[0], data)
	}
	logs := e.log.String()
	for _, re := range []string{
		`imap-login: Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.1, lip=127\.0\.0\.1, mpid=\d+, session=<[^>]+>`,
		`imap\(alice\)<\d+><[^>]+>: Disconnected: Logged out in=\d+ out=\d+`,
	} {
		if !regexp.MustCompile(re).MatchString(logs) {
			t.Errorf("log lacks %s:\n%s", re, logs)
		}
	}
}

func TestImaplibAuthenticatePlain(t *testing.T) {
	e := newEnv(t)
	_, addr := e.start(t, e.options())
	res := runClient(t, addr, "authplain", nil)
	if one(t, res, "done") != "ok" || len(res["fetch"]) != 3 {
		t.Errorf("AUTHENTICATE PLAIN session: %v", res)
	}
	if !strings.Contains(e.log.String(), "method=PLAIN") {
		t.Errorf("log: %s", e.log.String())
	}
}

func TestImaplibBadLogin(t *testing.T) {
	e := newEnv(t)
	_, addr := e.start(t, e.options())
	res := runClient(t, addr, "badlogin", nil)
	if got := one(t, res, "login"); !strings.HasPrefix(got, "refused") || !strings.Contains(got, "AUTHENTICATIONFAILED") {
		t.Errorf("bad password: %s", got)
	}
	if !regexp.MustCompile(`imap-login: Disconnected \(auth failed, 1 attempts in \d+ secs\): user=<alice>, method=PLAIN, rip=127\.0\.0\.1`).MatchString(e.log.String()) {
		t.Errorf("log: %s", e.log.String())
	}
}

// Mail delivered while a client idles shows up at once: by
// mailbox.DeliverMaildir in this process (the hub), and by another
// process moving a file into new/ (inotify).
func TestImaplibIdleDelivery(t *testing.T) {
	for _, how := range []string{"hub", "process"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t)
			_, addr := e.start(t, e.options())
			root := filepath.Join(e.home, "Maildir")
			res := runClient(t, addr, "idle", func(k, v string) {
				if k != "IDLE-WAITING" {
					return
				}
				msg := "Subject: delivered while idling\n\nhello\n"
				if how == "hub" {
					if _, err := mailbox.DeliverMaildir(context.Background(), root, strings.NewReader(msg), mailbox.MaildirOptions{Hub: e.hub}); err != nil {
						t.Error(err)
					}
					return
				}
				script := fmt.Sprintf("printf '%%s' \"$1\" > %s/tmp/ext.1 && mv %s/tmp/ext.1 %s/new/ext.1", root, root, root)
				if out, err := exec.Command("sh", "-c", script, "sh", msg).CombinedOutput(); err != nil {
					t.Errorf("external delivery: %v %s", err, out)
				}
			})
			if got := one(t, res, "exists"); got != "0" {
				t.Errorf("EXISTS %s", got)
			}
			if got := one(t, res, "idle_update"); got != "* 1 EXISTS" {
				t.Errorf("IDLE update %q", got)
			}
			if got := one(t, res, "idle_subject"); got != `b'Subject: delivered while idling\r\n\r\n'` {
				t.Errorf("fetched %s", got)
			}
		})
	}
}

// UIDs, UIDVALIDITY and flags survive a server restart.
func TestRestartKeepsUIDsAndFlags(t *testing.T) {
	e := newEnv(t)
	s1, addr := e.start(t, e.options())
	r1 := runClient(t, addr, "persist1", nil)
	s1.Close()
	_, addr2 := e.start(t, e.options())
	r2 := runClient(t, addr2, "persist2", nil)
	if one(t, r1, "uids") != one(t, r2, "uids") || one(t, r1, "uidvalidity") != one(t, r2, "uidvalidity") {
		t.Errorf("before restart %v\nafter %v", r1, r2)
	}
	if u := one(t, r2, "uids"); !strings.Contains(u, `2 (UID 2 FLAGS (\\Seen Custom1))`) {
		t.Errorf("flags after restart: %s", u)
	}
}
