package mda_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mda"
)

func TestParseMasterCF(t *testing.T) {
	svcs, err := mda.ReadMasterCF("testdata/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]mda.Service{}
	for _, s := range svcs {
		by[s.Name+"/"+s.Type] = s
	}
	smtp := by["smtp/inet"]
	if smtp.Command != "smtpd" || smtp.Private || !smtp.Unpriv || !smtp.Chroot || smtp.MaxProc != -1 || smtp.Line != 4 {
		t.Errorf("smtp: %+v", smtp)
	}
	if v, _ := smtp.Option("smtpd_client_restrictions"); v != "permit_mynetworks, reject" {
		t.Errorf("braced -o: %q", v)
	}
	if v, ok := by["127.0.0.1:10025/inet"].Option("content_filter"); !ok || v != "" {
		t.Errorf("empty -o value: %q %v", v, ok)
	}
	tls := by["tlsmgr/unix"]
	if tls.Wakeup != 1000 || !tls.WakeupIfUsed || tls.MaxProc != 1 {
		t.Errorf("tlsmgr: %+v", tls)
	}
	relay := by["relay/unix"]
	if strings.Join(relay.OptionOrder, ",") != "syslog_name,smtp_helo_timeout,smtp_connect_timeout" || relay.Options["syslog_name"] != "postfix/$service_name" {
		t.Errorf("relay options: %v %v", relay.OptionOrder, relay.Options)
	}
	if by["retry/unix"].Command != "error" {
		t.Errorf("retry: %+v", by["retry/unix"])
	}
	dovecot := by["dovecot/unix"]
	want := []string{"flags=DRhu", "user=vmail:vmail", "argv=/usr/lib/dovecot/dovecot-lda", "-f", "${sender}", "-d", "${user}@${nexthop}"}
	if strings.Join(dovecot.Args, "|") != strings.Join(want, "|") || dovecot.Unpriv {
		t.Errorf("dovecot args %q", dovecot.Args)
	}
	if got := by["spaced/unix"].Args; len(got) != 5 || got[3] != "two words" {
		t.Errorf("spaced args %q", got)
	}
}

// TestParseMasterCFMatchesPostconf compares every field with what
// Postfix's own parser reports (postconf -F and -P) for the same file.
func TestParseMasterCFMatchesPostconf(t *testing.T) {
	postconf := oracle.Require(t, "postconf")
	dir := oracle.ConfigDir(t, "")
	data, err := os.ReadFile("testdata/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	oracle.Backdate(t, filepath.Join(dir, "master.cf"))
	run := func(flag string) map[string]string {
		out, err := exec.Command(postconf, "-c", dir, flag).Output()
		if err != nil {
			t.Fatalf("postconf %s: %v", flag, err)
		}
		m := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), " = ")
			m[k] = v
		}
		return m
	}
	fields, params := run("-F"), run("-P")
	svcs, err := mda.ReadMasterCF(filepath.Join(dir, "master.cf"))
	if err != nil {
		t.Fatal(err)
	}
	yn := func(b bool) string {
		if b {
			return "y"
		}
		return "n"
	}
	got := map[string]string{}
	gotParams := map[string]string{}
	for _, s := range svcs {
		p := s.Name + "/" + s.Type + "/"
		got[p+"service"], got[p+"type"] = s.Name, s.Type
		got[p+"private"], got[p+"unprivileged"], got[p+"chroot"] = yn(s.Private), yn(s.Unpriv), yn(s.Chroot)
		got[p+"wakeup"] = strconv.Itoa(s.Wakeup)
		if s.WakeupIfUsed {
			got[p+"wakeup"] += "?"
		}
		got[p+"process_limit"] = strconv.Itoa(s.MaxProc)
		cmd := []string{s.Command}
		for _, name := range s.OptionOrder {
			o := name + "=" + s.Options[name]
			if strings.ContainsAny(o, " \t") {
				o = "{" + o + "}"
			}
			cmd = append(cmd, "-o", o)
			gotParams[p+name] = s.Options[name]
		}
		for _, a := range s.Args {
			if a == "" || strings.ContainsAny(a, " \t") {
				a = "{" + a + "}"
			}
			cmd = append(cmd, a)
		}
		got[p+"command"] = strings.Join(cmd, " ")
	}
	// postconf prints "-" for defaulted columns; resolve them as Postfix
	// does (private y, unprivileged y, chroot n, wakeup 0, limit -1).
	defaults := map[string]string{"private": "y", "unprivileged": "y", "chroot": "n", "wakeup": "0", "process_limit": "-1"}
	for k, v := range fields {
		if v == "-" {
			v = defaults[k[strings.LastIndexByte(k, '/')+1:]]
		}
		if got[k] != v {
			t.Errorf("%s: postconf %q, postkit %q", k, v, got[k])
		}
	}
	if len(got) != len(fields) {
		t.Errorf("postkit has %d fields, postconf %d", len(got), len(fields))
	}
	for k, v := range params {
		if gotParams[k] != v {
			t.Errorf("-o %s: postconf %q, postkit %q", k, v, gotParams[k])
		}
	}
	if len(gotParams) != len(params) {
		t.Errorf("postkit has %d -o options, postconf %d", len(gotParams), len(params))
	}
}

func TestParseMasterCFErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"smtp inet n - y - - \n", "x.cf line 1: want at least 8 fields"},
		{"# c\n  -o a=b\n", "x.cf line 2: continuation line without an entry"},
		{"smtp tcp n - y - - smtpd\n", `x.cf line 1: service smtp: bad transport type "tcp"`},
		{"smtp inet x - y - - smtpd\n", `x.cf line 1: service smtp: bad private field "x"`},
		{"\n\nsmtp inet n - y 1x - smtpd\n", `x.cf line 3: service smtp: bad wakeup time "1x"`},
		{"smtp inet n - y - -3 smtpd\n", `x.cf line 1: service smtp: bad process limit "-3"`},
		{"smtp inet n - y - - smtpd -o\n", "-o without name=value"},
		{"smtp inet n - y - - smtpd\n  -o novalue\n", `bad -o option "novalue"`},
		{"smtp inet n - y - - smtpd { a b\n", "missing '}'"},
		{"a unix - - n - - pipe\nb unix - - n - - pipe\na unix - - n - - local\n", `x.cf line 3: duplicate service "a" type unix (first at line 1)`},
		{"a unix - - n - - pipe\x00\n", "x.cf line 1: NUL character"},
	}
	for _, tt := range tests {
		_, err := mda.ParseMasterCF("x.cf", strings.NewReader(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.text, err, tt.want)
		}
	}
	if _, err := mda.ReadMasterCF(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("missing file: no error")
	}
}

func FuzzParseMasterCF(f *testing.F) {
	data, err := os.ReadFile("testdata/master.cf")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(data))
	f.Add("a unix - - n - - pipe argv=/bin/x { } {{a}} -o{ x = y }\n")
	f.Fuzz(func(t *testing.T, text string) {
		svcs, err := mda.ParseMasterCF("f.cf", strings.NewReader(text))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "mda: f.cf line ") {
				t.Fatalf("error without file and line: %v", err)
			}
			return
		}
		for _, s := range svcs {
			if s.Name == "" || s.Command == "" || s.Line < 1 {
				t.Fatalf("incomplete service %+v", s)
			}
		}
	})
}

func TestMasterCFOptionsStopAtFirstArgument(t *testing.T) {
	svcs, err := mda.ParseMasterCF("x.cf", strings.NewReader(
		"p unix - n n - - pipe -o a=b { -o c=d } flags=R user=nobody argv=/bin/echo -o x=y\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := svcs[0]
	if len(s.Options) != 1 || s.Options["a"] != "b" {
		t.Errorf("options %v", s.Options)
	}
	want := []string{"-o c=d", "flags=R", "user=nobody", "argv=/bin/echo", "-o", "x=y"}
	if strings.Join(s.Args, "|") != strings.Join(want, "|") {
		t.Errorf("args %q, want %q", s.Args, want)
	}
}
