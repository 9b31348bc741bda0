package bounce

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseTemplates feeds bounce_template_file text to the parser and
// expands what it accepts: no panic, and an accepted template gives a
// notice that go-message reads as three parts.
func FuzzParseTemplates(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/templates/*.cf")
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	f.Add(templateFile)
	f.Fuzz(func(t *testing.T, file string) {
		tm, err := ParseTemplates("fuzz.cf", strings.NewReader(file))
		if err != nil {
			return
		}
		s := testSettings()
		s.Templates = tm
		s.NotifyClasses = []string{"bounce"}
		ns, err := s.Notices(Failure, testMessage(failed("a@example.net")))
		if err != nil {
			return // an expansion error is reported, not a panic
		}
		for _, n := range ns {
			if _, err := goMessageSummary(n.Data); err != nil {
				t.Fatalf("template %q: %v\n%s", file, err, n.Data)
			}
		}
	})
}

// FuzzNotice feeds arbitrary original content, addresses and reasons to
// the generator: no panic, every line ends in CRLF, and go-message reads
// the result as a three-part report.
func FuzzNotice(f *testing.F) {
	f.Add(testContent, "alice@example.org", "a@example.net", "550 5.1.1 user unknown", "ENV1", "3F1A2B4C5D", true, false)
	f.Add("A: 1\r\n\r\n--x.0/h\r\n", "", "d\xc3\xb6rte@example.net", "x\r\ny", "", "x", false, true)
	f.Add("no header section", "\"a b\"@x", "@r:u@x", strings.Repeat("w ", 200), "e\x00", "a\"b\r\n", true, true)
	f.Fuzz(func(t *testing.T, content, sender, rcpt, reason, envid, queueID string, full, utf8 bool) {
		s := testSettings()
		s.NotifyClasses = []string{"bounce", "2bounce"}
		r := failed(rcpt)
		r.Reason, r.DiagnosticCode = reason, "smtp; "+reason
		m := testMessage(r)
		m.Sender, m.ENVID, m.SMTPUTF8, m.QueueID = sender, envid, utf8, queueID
		m.Content, m.Size = strings.NewReader(content), int64(len(content))
		if !full {
			m.Ret = RetHdrs
		}
		ns, err := s.Notices(Failure, m)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if bytes.Contains(bytes.ReplaceAll(n.Data, []byte("\r\n"), nil), []byte("\n")) {
				t.Fatalf("a bare LF in the notice:\n%q", n.Data)
			}
			if !bytes.HasSuffix(n.Data, []byte("--\r\n")) {
				t.Fatalf("no closing boundary:\n%q", n.Data)
			}
			if _, err := goMessageSummary(n.Data); err != nil {
				t.Fatalf("%v\n%q", err, n.Data)
			}
		}
	})
}
