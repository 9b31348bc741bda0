package local

import (
	"strings"
	"testing"
)

func TestSplitTokens(t *testing.T) {
	tests := []struct{ in, want string }{
		{"bob, carol", "bob|carol"},
		{"bob carol", "bob|carol"},
		{`"|cat > /tmp/x", /var/mail/f`, "|cat > /tmp/x|/var/mail/f"},
		{`"a b"@x.example`, "a b@x.example"},
		{"Bob Smith <bob@x>, carol", "bob@x|carol"},
		{":include:/etc/list", ":include:/etc/list"},
		{"a (comment) , b", "a|b"},
		{`\root`, "root"},
		{" , ,", ""},
		{"/dir/maildir/", "/dir/maildir/"},
	}
	for _, tt := range tests {
		if got := strings.Join(splitTokens(tt.in), "|"); got != tt.want {
			t.Errorf("splitTokens(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExpandAttrs(t *testing.T) {
	attrs := map[string]string{"user": "bob", "home": "/home/bob", "extension": "a/b", "recipient_delimiter": "+", "local": "bob+x"}
	tests := []struct {
		in, want string
		undef    bool
	}{
		{"$home/.forward${recipient_delimiter}${extension}", "/home/bob/.forward+a/b", false},
		{"$home/.forward$shell", "/home/bob/.forward", true},
		{"${shell?yes}${shell:no}$$", "no$", false},
		{"$(user)@other", "bob@other", false},
		{"admin+$local", "admin+bob+x", false},
	}
	for _, tt := range tests {
		got, undef, err := expandAttrs(tt.in, attrs, "")
		if err != nil || got != tt.want || undef != tt.undef {
			t.Errorf("expandAttrs(%q) = %q, %v, %v; want %q, %v", tt.in, got, undef, err, tt.want, tt.undef)
		}
	}
	// The filter replaces characters of values, not of the template.
	got, _, _ := expandAttrs("/x/$user", map[string]string{"user": "a;b c"}, "abcdefghijklmnopqrstuvwxyz")
	if got != "/x/a_b_c" {
		t.Errorf("filtered: %q", got)
	}
	for _, bad := range []string{"${user", "$", "${}", "${a b}", "$-"} {
		if _, _, err := expandAttrs(bad, attrs, ""); err == nil {
			t.Errorf("expandAttrs(%q): no error", bad)
		}
	}
}

func TestReadLogicalLines(t *testing.T) {
	got, err := readLogicalLines(strings.NewReader("# c\na,\n  b\n\n   # indented comment\nc\r\n"))
	if err != nil || strings.Join(got, "|") != "a, b|c" {
		t.Errorf("got %q, %v", got, err)
	}
}

func FuzzSplitTokens(f *testing.F) {
	for _, s := range []string{`a, "b c"@d, <e@f>, (x) g`, `"|cmd" :include:/x /y`, `"unterminated`, `<a`, `((a)`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		toks := splitTokens(s)
		for _, tok := range toks {
			if tok == "" && !strings.Contains(s, `"`) {
				t.Errorf("empty token from %q", s)
			}
		}
		lines, err := readLogicalLines(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "#") {
				t.Errorf("comment kept: %q", l)
			}
		}
	})
}

func FuzzExpandAttrs(f *testing.F) {
	for _, s := range []string{"$home/.forward${recipient_delimiter}${extension}", "${a?${b:c}}", "$(x", "$$$", "${user?{x}}"} {
		f.Add(s)
	}
	attrs := map[string]string{"user": "u", "home": "/h", "b": "$user"}
	f.Fuzz(func(t *testing.T, s string) {
		out, _, err := expandAttrs(s, attrs, "")
		if err == nil && !strings.Contains(s, "$") && out != s {
			t.Errorf("text without $ changed: %q -> %q", s, out)
		}
	})
}
