package milter_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/milter"
	"github.com/postkit-mail/postkit/restrictions"
)

func TestParseList(t *testing.T) {
	tests := []struct {
		in   string
		want []milter.Spec
		err  string
	}{
		{"inet:127.0.0.1:8891", []milter.Spec{{Name: "inet:127.0.0.1:8891", Network: "tcp", Address: "127.0.0.1:8891"}}, ""},
		{"unix:/run/opendkim/opendkim.sock, inet:[::1]:11332", []milter.Spec{
			{Name: "unix:/run/opendkim/opendkim.sock", Network: "unix", Address: "/run/opendkim/opendkim.sock"},
			{Name: "inet:[::1]:11332", Network: "tcp", Address: "[::1]:11332"},
		}, ""},
		{"inet:8891", []milter.Spec{{Name: "inet:8891", Network: "tcp", Address: "localhost:8891"}}, ""},
		{"{ inet:localhost:8891, connect_timeout=10s, command_timeout = 1m, content_timeout=20, default_action = Accept, protocol=4 } unix:x",
			[]milter.Spec{
				{Name: "inet:localhost:8891", Network: "tcp", Address: "localhost:8891", ConnectTimeout: 10 * time.Second,
					CommandTimeout: time.Minute, ContentTimeout: 20 * time.Second, DefaultAction: "accept", Protocol: 4},
				{Name: "unix:x", Network: "unix", Address: "x"},
			}, ""},
		{"", nil, ""},
		{"tcp:host:1", nil, "unknown transport"},
		{"inet:host:99999", nil, "bad port"},
		{"inet:", nil, "want inet"},
		{"{ inet:h:1, default_action=bounce }", nil, "not accept, reject"},
		{"{ inet:h:1, protocol=5 }", nil, "milter protocol version"},
		{"{ inet:h:1, frobnicate=1 }", nil, "unknown setting"},
		{"{ inet:h:1, connect_timeout }", nil, "not name=value"},
		{"{ inet:h:1, connect_timeout=soon }", nil, "connect_timeout"},
	}
	for _, tc := range tests {
		got, err := milter.ParseList(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseList(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseList(%q) = %+v, %v\nwant %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestFromConfig(t *testing.T) {
	cf, err := config.Parse("main.cf", strings.NewReader(`myhostname = mx.example.com
smtpd_milters = inet:127.0.0.1:8891, { unix:/run/m.sock, default_action = accept }
milter_default_action = quarantine
milter_command_timeout = 10s
milter_protocol = 4
milter_rcpt_macros = i {rcpt_addr}
milter_macro_defaults = {auth_type}=none
`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := milter.FromConfig(context.Background(), cf, "smtpd_milters")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Milters) != 2 || c.Milters[1].DefaultAction != "accept" || c.Milters[1].Address != "/run/m.sock" {
		t.Errorf("milters %+v", c.Milters)
	}
	if c.DefaultAction != "quarantine" || c.CommandTimeout != 10*time.Second || c.ConnectTimeout != 30*time.Second ||
		c.ContentTimeout != 300*time.Second || c.Protocol != 4 {
		t.Errorf("settings %+v", c)
	}
	if !reflect.DeepEqual(c.Macros.Rcpt, []string{"i", "{rcpt_addr}"}) ||
		!reflect.DeepEqual(c.Macros.Connect, milter.DefaultMacros().Connect) ||
		c.Macros.Defaults["{auth_type}"] != "none" {
		t.Errorf("macros %+v", c.Macros)
	}
	if c.Values["j"] != "mx.example.com" || c.Values["{daemon_name}"] != "mx.example.com" || !strings.HasPrefix(c.Values["v"], "Postfix ") {
		t.Errorf("values %q", c.Values)
	}
	n, err := milter.FromConfig(context.Background(), cf, "non_smtpd_milters")
	if err != nil || len(n.Milters) != 0 {
		t.Errorf("non_smtpd_milters: %+v %v", n, err)
	}
	for _, bad := range []string{"milter_default_action = bounce", "milter_protocol = 7", "smtpd_milters = frob:x",
		"milter_macro_defaults = novalue", "milter_command_timeout = x"} {
		cf, err := config.Parse("main.cf", strings.NewReader(bad+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := milter.FromConfig(context.Background(), cf, "smtpd_milters"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		in   string
		want restrictions.Reply
		err  bool
	}{
		{"550 5.7.1 Go away", restrictions.Reply{Code: 550, DSN: "5.7.1", Text: "Go away"}, false},
		{"550 Go away\r\n", restrictions.Reply{Code: 550, DSN: "", Text: "Go away"}, false},
		{"451 4.3.0", restrictions.Reply{Code: 451, DSN: "4.3.0", Text: ""}, false},
		{"421", restrictions.Reply{Code: 421}, false},
		{"550 4.7.1 wrong class", restrictions.Reply{}, true},
		{"554-5.7.0 one\r\n554-5.7.0 two\r\n554 5.7.0 three", restrictions.Reply{Code: 554, DSN: "5.7.0", Text: "one\ntwo\nthree"}, false},
		{"554-5.7.0 one\n554 two", restrictions.Reply{Code: 554, DSN: "5.7.0", Text: "one\ntwo"}, false},
		{"550 5.1.10 long detail", restrictions.Reply{Code: 550, DSN: "5.1.10", Text: "long detail"}, false},
		{"550 5.1234.1 not a dsn", restrictions.Reply{Code: 550, DSN: "", Text: "5.1234.1 not a dsn"}, false},
		{"250 ok", restrictions.Reply{}, true},
		{"", restrictions.Reply{}, true},
		{"55", restrictions.Reply{}, true},
		{"5x0 no", restrictions.Reply{}, true},
		{"550-only continuation", restrictions.Reply{}, true},
		{"550 one\r\n550 two", restrictions.Reply{}, true},
		{"550-one\r\n451 two", restrictions.Reply{}, true},
		{"550Xtext", restrictions.Reply{}, true},
	}
	for _, tc := range tests {
		got, err := milter.ParseReply(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseReply(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"550 5.7.1 Go away", "554-5.7.0 one\r\n554 5.7.0 two", "421", "4", "550-\n550 x", "550 5.0.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := milter.ParseReply(s)
		if err != nil {
			return
		}
		if r.Code < 400 || r.Code > 599 {
			t.Fatalf("ParseReply(%q) code %d", s, r.Code)
		}
		if r.DSN != "" && r.DSN[0] != byte('0'+r.Code/100) {
			t.Fatalf("ParseReply(%q) DSN %q for code %d", s, r.DSN, r.Code)
		}
		if strings.ContainsAny(r.Text, "\r") {
			t.Fatalf("ParseReply(%q) text has CR: %q", s, r.Text)
		}
	})
}

// FuzzParseList: milter lists come from main.cf.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"inet:127.0.0.1:8891", "{ unix:/x, default_action=accept, protocol=2 } inet:[::1]:1",
		"{ inet:h:1, connect_timeout = 5m }", "{", "inet::", "{ , = }"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		specs, err := milter.ParseList(s)
		if err != nil {
			return
		}
		for _, sp := range specs {
			if sp.Network != "tcp" && sp.Network != "unix" || sp.Address == "" {
				t.Fatalf("ParseList(%q) gave %+v", s, sp)
			}
		}
	})
}
