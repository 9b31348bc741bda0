package bounce

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// oracleTemplates has every variable of bounce(5), the $ forms of
// main.cf and an empty line at the end of a text.
const oracleTemplates = `failure_template = <<EOF
Charset: utf-8
Subject: s

H $myhostname D $mydomain N $mail_name O ${myorigin} B $(double_bounce_sender)
W $delay_warning_time_seconds $delay_warning_time_minutes $delay_warning_time_hours $delay_warning_time_days $delay_warning_time_weeks
M $maximal_queue_lifetime_seconds $maximal_queue_lifetime_minutes $maximal_queue_lifetime_hours $maximal_queue_lifetime_days $maximal_queue_lifetime_weeks
X $$ $$$$ ${mydomain?set} ${nothing:unset} ${my_param} $bounce_size_limit

EOF
delay_template = <<XX
Subject: d

  leading blanks and a \backslash are literal; $mail_name
XX
verify_template = <<EOF
Verify $myhostname.
EOF
`

// TestTemplateExpansionOracle expands a template file with "postconf -b"
// and with ExpandText under several main.cf settings.
func TestTemplateExpansionOracle(t *testing.T) {
	oracle.Require(t, "postconf")
	for _, tc := range []struct{ name, main string }{
		{"defaults", "myhostname = mx.example.com\n"},
		{"times", "myhostname = mx.example.com\nmaximal_queue_lifetime = 3d\ndelay_warning_time = 90m\nbounce_size_limit = 12345\n"},
		{"weeks", "myhostname = mx.example.com\nmaximal_queue_lifetime = 3w\ndelay_warning_time = 1w\n"},
		{"idna", "myhostname = mx.xn--bcher-kva.example\nmydomain = xn--bcher-kva.example\nmyorigin = $mydomain\n"},
		{"idna off", "smtputf8_enable = no\nmyhostname = mx.xn--bcher-kva.example\nmail_name = Mailer\ndouble_bounce_sender = db\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := oracle.ConfigDir(t, tc.main+"my_param = value of my_param\n")
			tpath := filepath.Join(dir, "bounce.cf")
			if err := os.WriteFile(tpath, []byte(oracleTemplates), 0o644); err != nil {
				t.Fatal(err)
			}
			oracle.Backdate(t, tpath)
			res := oracle.Run(t, nil, "postconf", "-c", dir, "-b", tpath)
			if res.Code != 0 {
				t.Fatalf("postconf -b: %d %s", res.Code, res.Stderr)
			}
			theirs := parseExpanded(string(res.Stdout))

			cfg, err := config.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Set("bounce_template_file", tpath)
			s, err := FromConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			tm := s.templates()
			for _, x := range []struct {
				name string
				t    *Template
			}{{"failure", &tm.Failure}, {"delay", &tm.Delay}, {"verify", &tm.Verify}} {
				ours, err := s.ExpandText(x.t)
				if err != nil {
					t.Fatal(err)
				}
				if want, ok := theirs[x.name]; !ok {
					t.Errorf("postconf -b printed no %s text:\n%s", x.name, res.Stdout)
				} else if ours != want {
					t.Errorf("%s text:\n%s", x.name, oracle.Diff(want, ours))
				}
			}
		})
	}
}

// parseExpanded reads "postconf -b" output: "expanded_NAME_text = <<EOF",
// lines, "EOF".
func parseExpanded(out string) map[string]string {
	texts := map[string]string{}
	var name string
	var lines []string
	for l := range strings.SplitSeq(out, "\n") {
		if n, ok := strings.CutPrefix(l, "expanded_"); ok && strings.HasSuffix(l, "_text = <<EOF") {
			name, lines = strings.TrimSuffix(n, "_text = <<EOF"), nil
			continue
		}
		if name != "" && l == "EOF" {
			texts[name] = strings.Join(lines, "\n")
			name = ""
			continue
		}
		if name != "" {
			lines = append(lines, l)
		}
	}
	return texts
}

// An undefined $name is an error, to FromConfig as to "postconf -b".
func TestTemplateUndefined(t *testing.T) {
	dir := oracle.ConfigDir(t, "myhostname = mx.example.com\n")
	tpath := filepath.Join(dir, "bounce.cf")
	if err := os.WriteFile(tpath, []byte("failure_template = <<EOF\nHello $no_such_parameter.\nEOF\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	oracle.Backdate(t, tpath)
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Set("bounce_template_file", tpath)
	if _, err := FromConfig(cfg); err == nil || !strings.Contains(err.Error(), "no_such_parameter") {
		t.Errorf("FromConfig: %v, want an error naming $no_such_parameter", err)
	}
	oracle.Require(t, "postconf")
	r := oracle.Run(t, nil, "postconf", "-c", dir, "-b", tpath)
	if r.Code == 0 || !strings.Contains(string(r.Stderr), "undefined $name") {
		t.Errorf("postconf -b accepted it: %d %s", r.Code, r.Stderr)
	}
}
