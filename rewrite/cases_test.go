package rewrite

import (
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// mainCase: the tables of most differential tests.
var mainFiles = []oracle.File{
	{Name: "canonical", Postmap: "hash", Data: `
old@origin.example      new@origin.example
chain1@c.test           chain2@c.test
chain2@c.test           chain3@c.test
loop1@c.test            loop2@c.test
loop2@c.test            loop1@c.test
self@c.test             self@c.test
multi@c.test            first@c.test, second@c.test
joe@ext.test            jdoe@ext2.test
@dom.test               @newdom.test
localuser               local-mapped@c.test
"quoted user"@q.test    unquoted@q.test
qcanon@c.test           "canon q"@c.test
case@c.test             CaseResult@C.test
short@c.test            shortuser
both@b.test             fromcanonical@b.test
upper@c.test            UPPER@c.test
`},
	{Name: "canonical.re", Data: `
/^re-(.*)@re\.test$/    $1@re-done.test
`},
	{Name: "sender_canonical", Postmap: "hash", Data: `
sender@s.test           snew@s.test
both@b.test             fromsender@b.test
`},
	{Name: "recipient_canonical", Postmap: "hash", Data: `
rcpt@r.test             rnew@r.test
both@b.test             fromrcpt@b.test
`},
	{Name: "virtual", Postmap: "hash", Data: `
a@v.test                b@v.test, c@v.test
b@v.test                d@v.test
self@v.test             self@v.test, other@v.test
list@v.test             x@v.test, list@v.test, y@v.test
joe@v.test              jdoe@w.test
@catch.test             catchall@w.test
@keepuser.test          @w.test
deep1@v.test            deep2@v.test
deep2@v.test            deep3@v.test, deep2@v.test
case@v.test             CASE@v.test
local                   localvirt@w.test
unq@v.test              unqualified
ext@v.test              ext-a@w.test, ext-b@w.test
dup@v.test              b@v.test, d@v.test
"q u"@v.test            qu@w.test
qres@v.test             "q r"@w.test, plain@w.test
`},
	{Name: "virtual.re", Data: `
/^rx-(.*)@vre\.test$/   $1@w.test, rxcopy@w.test
`},
}

const mainCF = `
recipient_delimiter = +
canonical_maps = hash:$config_directory/canonical, regexp:$config_directory/canonical.re
sender_canonical_maps = hash:$config_directory/sender_canonical
recipient_canonical_maps = hash:$config_directory/recipient_canonical
masquerade_domains = !keep.masq.test, masq.test, other.test
masquerade_exceptions = root, admin
virtual_alias_maps = hash:$config_directory/virtual, regexp:$config_directory/virtual.re
`

// Addresses that exercise the canonical form and every mapping, used as
// senders, recipients and header addresses.
var envelopeAddrs = []string{
	"old", "old@origin.example", "OLD@ORIGIN.EXAMPLE", "user", "user@host", "user@host.", "user@host..",
	"site!user", "a!b!c", "user%site", "u%v%w", "user%site@host.test", "@a.test,@b.test:user@c.test",
	"chain1@c.test", "loop1@c.test", "self@c.test", "multi@c.test", "joe@ext.test", "joe+foo@ext.test",
	"x@dom.test", "x+y@dom.test", "localuser", "localuser@mail.example.com", "localuser+z@origin.example",
	"localuser@elsewhere.test", `"quoted user"@q.test`, "case@c.test", "Case@C.Test", "short@c.test",
	"both@b.test", "sender@s.test", "rcpt@r.test", "re-abc@re.test", "upper@c.test",
	"u@host.masq.test", "u@a.b.masq.test", "u@masq.test", "u@x.keep.masq.test", "u@keep.masq.test",
	"root@host.masq.test", "ROOT@host.masq.test", "u@host.other.test", "u@notmasq.test",
	"MAILER-DAEMON", "mailer-daemon@origin.example", "MAILER-DAEMON@other.test", "mailer-daemon",
	`"john smith"@q.test`, `"a@b"@q.test`, "qcanon+e@c.test", "postmaster", "u@[192.0.2.1]", "u@[192.0.2.1].", "localuser@[127.0.0.1]", "localuser@[192.0.2.9]",
}

var virtualAddrs = []string{
	"a@v.test", "b@v.test", "self@v.test", "list@v.test", "joe@v.test", "joe+ext@v.test", "JOE@V.TEST",
	"anyone@catch.test", "anyone+x@catch.test", "kept@keepuser.test", "kept+e@keepuser.test",
	"deep1@v.test", "case@v.test", "local", "local@origin.example", "local+x@mail.example.com",
	"unq@v.test", "ext+tag@v.test", "dup@v.test", `"q u"@v.test`, "rx-abc@vre.test", "nomatch@v.test",
	"chain1@c.test", "rcpt@r.test", "qres@v.test", "qres+x@v.test", `"qres+a b"@v.test`,
}

// headerSet is a message's worth of headers that probe the tok822 parser
// and the folding.
var headerSet = []string{
	`From: "Joe Q. Public" <john.q.public@example.com>`,
	`To: Mary Smith <mary@x.test>, jdoe@one.test, Who? <one@y.test>`,
	`Cc: <boss@nil.test>, "Giant; \"Big\" Box" <sysservices@example.net>`,
	`Resent-To: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;`,
	`Resent-Cc: Undisclosed recipients:;`,
	`Sender: Pete(A nice \) chap) <pete(his account)@silly.test(his host)>`,
	`Apparently-To: (Empty list)(start)Hidden recipients  :(nobody(that I know))  ;`,
	`Reply-To: old`,
	`Errors-To: user%site, site!user, <@a.test,@b.test:u@c.test>`,
	`Mail-Followup-To: trailing@dot.test., "quoted"@x.test, bare`,
	"To: a@x.test,\n b@y.test,\n\tc",
	`Cc: one@x.test, two@x.test, three@x.test, four@x.test, five@x.test, six@x.test, seven@x.test, eight@x.test`,
	`To: <<<>>> @@ ;;; "unterminated`,
	`To: a@b c@d`,
	`From: =?utf-8?q?J=C3=B6rg?= <joerg@x.test>`,
	`Resent-Sender: <>`,
	`Cc:`,
	`Resent-From: Jörg <jörg@x.test>`,
	"Disposition-Notification-To: a@b.test (multi\n line comment)",
	`Return-Receipt-To: <a@b.test (com)>, Name a@b.test`,
	`To: "unterminated <x@y.test>`,
	`Cc: (comment only)`,
	`To: <a@b.test`,
	`Cc: a@b.test>`,
	`To: [1.2.3.4], a@[192.0.2.1], b@[IPv6:2001:db8::1]`,
	`Resent-Reply-To: x@y.test;z@w.test`,
	`To: a.@b.test, .a@b.test, a..b@c.test, "a b"@c.test`,
	`Subject: old@origin.example, user`,
	`X-Mailer: not an address header <old>`,
	`Bcc: old`,
	`To: \`, `To: "a \ b"`, `Cc: \\x, a\,b, a\ b, "x\y"`, `To: x (c\) d) e, [a\]b]`, "To: a\\\n b", `Cc: \@x, "a\"b"`,
	`To: !a.b[1.2.3.4], !x "y", a!b, "c"!d, !`,
}

// extensionHeaders: the extension of joe+...@ext.test is propagated into
// the result of canonical_maps; specials in it must end up quoted.
var extensionHeaders = []string{
	`To: joe+x@ext.test))>,"a\"b"joe+x@ext.test>`,
	`To: joe+x@ext.test!\,joe+x@ext.test`,
	`To: joe+x@ext.test\<)userjoe+x@ext.test;x@y.test`,
	`Cc: "joe+a b"@ext.test, "joe+\"q\""@ext.test, joe+x.@ext.test`,
	// A trailing backslash leaves an empty atom that the rescan after
	// each mapping step drops.
	`To: old old@origin.example[1.2.3.4]\\(c)>=?utf-8?q?x?=: g:sub.dom`,
	`Resent-To: joe+x@ext.test"q s".@\,\\,`,
}

// mappedHeaders use the tables.
var mappedHeaders = []string{
	`From: Old Guy <old@origin.example>`,
	`Sender: sender@s.test (the sender), both@b.test`,
	`To: rcpt@r.test, both@b.test, chain1@c.test`,
	`Cc: joe+foo@ext.test, x+y@dom.test, localuser, multi@c.test, loop1@c.test`,
	`Reply-To: "quoted user"@q.test, re-abc@re.test, short@c.test`,
	`From: u@host.masq.test, root@host.masq.test, u@x.keep.masq.test`,
	`To: u@a.b.masq.test, u@host.other.test (Masq), u@masq.test`,
	`Resent-From: MAILER-DAEMON, a@v.test`,
	"To: Very Long Display Name Number One <chain1@c.test>, Another Very Long Display Name <rcpt@r.test>,\n Third <x@y.test>",
	`Cc: ` + strings.Repeat("(a very long comment that goes on) ", 9) + `<old@origin.example>, z@w.test`,
}

func TestOracleRewrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	var msgs []oracleMsg
	// Each envelope address as sender, and all of them as recipients.
	for _, a := range envelopeAddrs {
		msgs = append(msgs, oracleMsg{sender: a, rcpts: []string{"rcpt@r.test"}, headers: []string{"From: x@y.test", "To: x@y.test"}})
	}
	msgs = append(msgs,
		oracleMsg{sender: "", rcpts: envelopeAddrs, headers: headerSet},
		oracleMsg{sender: "old", rcpts: virtualAddrs, headers: mappedHeaders},
		oracleMsg{sender: "s@x.test", rcpts: []string{`"joe+a b"@ext.test`, `"joe+\"q"@ext.test`, `"ext+a,b"@v.test`}, headers: extensionHeaders},
		oracleMsg{remote: true, sender: "old", rcpts: []string{"user", "site!user", "a@v.test"}, headers: mappedHeaders},
		oracleMsg{remote: true, sender: "sender@s.test", rcpts: []string{"x@y.test"}, headers: headerSet},
	)
	n := compareOracle(t, oracleCase{name: "main", main: mainCF, files: mainFiles, msgs: msgs})
	t.Logf("%d addresses and headers compared with Postfix", n)
}

// optionsCF turns the defaults around: append_dot_mydomain, no bang path
// or percent hack, other class sets, no extension propagation, a
// remote_header_rewrite_domain, a small header_address_token_limit and
// two delimiters.
func optionsCF() string {
	return strings.Replace(mainCF, "recipient_delimiter = +\n", "recipient_delimiter = +-\n", 1) + `
append_dot_mydomain = yes
swap_bangpath = no
allow_percent_hack = no
canonical_classes = envelope_sender, header_recipient
sender_canonical_classes = header_sender
recipient_canonical_classes = envelope_recipient
masquerade_classes = envelope_sender, envelope_recipient, header_recipient
propagate_unmatched_extensions =
remote_header_rewrite_domain = remote.test
header_address_token_limit = 12
`
}

// TestOracleOptions turns the defaults around: append_dot_mydomain,
// no bang path or percent hack, other class sets, no extension
// propagation, a remote_header_rewrite_domain and a small
// header_address_token_limit.
func TestOracleOptions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	main := optionsCF()
	var msgs []oracleMsg
	for _, a := range envelopeAddrs {
		msgs = append(msgs, oracleMsg{sender: a, rcpts: []string{a}, headers: []string{"From: " + a, "To: " + a}})
	}
	msgs = append(msgs,
		oracleMsg{sender: "old", rcpts: virtualAddrs, headers: mappedHeaders},
		oracleMsg{remote: true, sender: "old", rcpts: []string{"user", "owner-list", "list-request", "joe-x@v.test"}, headers: mappedHeaders},
		oracleMsg{remote: true, sender: "sender@s.test", rcpts: []string{"x@y.test"}, headers: headerSet},
		oracleMsg{sender: "x", rcpts: []string{"x@y.test"}, headers: []string{
			"To: a@b, c@d, e@f, g@h, i@j, k@l, m@n",
			"Cc: user",
			"From: one two three four five six seven eight nine ten eleven twelve thirteen",
		}},
	)
	n := compareOracle(t, oracleCase{name: "options", main: main, files: mainFiles, msgs: msgs})
	t.Logf("%d addresses and headers compared with Postfix", n)
}

// TestOracleLimits: the virtual alias limits defer the message.
func TestOracleLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	main := `
recipient_delimiter = +
append_at_myorigin = no
virtual_alias_maps = hash:$config_directory/virtual
virtual_alias_expansion_limit = 4
virtual_alias_recursion_limit = 3
virtual_alias_address_length_limit = 24
`
	files := []oracle.File{{Name: "virtual", Postmap: "hash", Data: `
wide@v.test     a@w.test, b@w.test, c@w.test, d@w.test, e@w.test
four@v.test     a@w.test, b@w.test, c@w.test, d@w.test
deep1@v.test    deep2@v.test
deep2@v.test    deep3@v.test
deep3@v.test    deep4@v.test
deep4@v.test    deep5@v.test
ok1@v.test      ok2@v.test
ok2@v.test      ok3@v.test
ok3@v.test      end@w.test
long@v.test     a-very-long-local-part@w.test
short@v.test    exactly-twenty-four@w.t
loop@v.test     loop2@v.test
loop2@v.test    loop@v.test
self@v.test     self@v.test, x@w.test
bare            unqualified
`}}
	var msgs []oracleMsg
	for _, a := range []string{"wide@v.test", "four@v.test", "deep1@v.test", "deep2@v.test", "ok1@v.test",
		"long@v.test", "short@v.test", "loop@v.test", "self@v.test", "bare", "bare@v.test", "user", "Self@V.test"} {
		msgs = append(msgs, oracleMsg{sender: "s@x.test", rcpts: []string{a}, headers: []string{"From: s@x.test", "To: " + a}})
	}
	n := compareOracle(t, oracleCase{name: "limits", main: main, files: files, msgs: msgs})
	t.Logf("%d addresses and headers compared with Postfix", n)
}

// TestOracleNoMappings: receive_override_options = no_address_mappings
// keeps the canonical form and drops every table and masquerading.
func TestOracleNoMappings(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	main := mainCF + "receive_override_options = no_address_mappings\n"
	msgs := []oracleMsg{
		{sender: "old", rcpts: append(append([]string{}, virtualAddrs...), envelopeAddrs...), headers: mappedHeaders},
		{sender: "u@host.masq.test", rcpts: []string{"x@y.test"}, headers: headerSet},
		{sender: "MAILER-DAEMON", rcpts: []string{"x@y.test"}, headers: []string{"From: MAILER-DAEMON"}},
	}
	n := compareOracle(t, oracleCase{name: "nomappings", noMappings: true, main: main, files: mainFiles, msgs: msgs})
	t.Logf("%d addresses and headers compared with Postfix", n)
}

// TestOracleCatchAll: regexp tables that match anything, including the
// null sender and MAILER-DAEMON, and masquerading details.
func TestOracleCatchAll(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	main := `
recipient_delimiter = +
sender_canonical_maps = regexp:$config_directory/sender.re
recipient_canonical_maps = pcre:$config_directory/rcpt.pcre
masquerade_domains = Sub.Example.COM, !!twice.test, example.com
masquerade_exceptions = hash:$config_directory/exceptions
masquerade_classes = envelope_sender, envelope_recipient, header_sender, header_recipient
`
	files := []oracle.File{
		{Name: "sender.re", Data: "/^(.*)@(.*)$/  sender-$1@$2\n/^$/  null@x.test\n"},
		{Name: "rcpt.pcre", Data: "/^(.+)\\+(.+)@(.*)$/  $2-$1@$3\n/^\"(.*)\"@q\\.test$/  q-$1@q.test\n"},
		{Name: "exceptions", Postmap: "hash", Data: "postmaster x\nroot x\n"},
	}
	msgs := []oracleMsg{
		{sender: "", rcpts: []string{"a+b@c.test", `"x y"@q.test`, "u@a.sub.example.com", "u@a.b.example.com", "root@a.example.com", "u@twice.test", "u@a.twice.test", "Postmaster@a.example.com", "u@sub.example.com"}, headers: []string{"From: <>", "To: a+b@c.test, u@a.sub.example.com", "Cc: root@a.example.com, \"x y\"@q.test"}},
		{sender: "MAILER-DAEMON", rcpts: []string{"x@y.test"}, headers: []string{"From: MAILER-DAEMON", "Sender: mailer-daemon@origin.example"}},
		{sender: "u@a.b.example.com", rcpts: []string{"x@y.test"}, headers: []string{"From: u@a.b.example.com"}},
		{sender: "u+e@a.b.example.com", rcpts: []string{"x@y.test"}, headers: []string{"From: x@y.test", "Reply-To: u+e@a.b.example.com"}},
	}
	n := compareOracle(t, oracleCase{name: "catchall", main: main, files: files, msgs: msgs})
	t.Logf("%d addresses and headers compared with Postfix", n)
}

// TestOracleRandomHeaders sends headers made of random RFC 822 token soup
// (a fixed seed, so failures repeat) and compares Postfix's regenerated
// headers with ours: the parser's grouping, comment moving, comma
// insertion, quoting and folding all show in the result.
func TestOracleRandomHeaders(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		randomHeaders(t, mainCF+"remote_header_rewrite_domain = remote.test\n", 25, 5)
	})
	t.Run("options", func(t *testing.T) {
		randomHeaders(t, strings.Replace(optionsCF(), "header_address_token_limit = 12", "header_address_token_limit = 30", 1), 10, 6)
	})
}

func randomHeaders(t *testing.T, main string, count int, seed int64) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	pieces := []string{
		"a", "bob", "old", "user", "Name", "x@y.test", "old@origin.example", "u@host.masq.test", "rcpt@r.test",
		"@", ".", ",", ";", ":", "<", ">", "<>", "!", "%", " ", " ", " ", "\n ", "\n\t",
		`"q s"`, `"a\"b"`, `"`, "(c)", "(n (e) d)", "(", ")", "[1.2.3.4]", "[", "]", `\`, `\,`,
		"joe+x@ext.test", "g:", "sub.dom", "-", "=?utf-8?q?x?=",
	}
	names := []string{"From", "To", "Cc", "Reply-To", "Sender", "Resent-To", "Errors-To"}
	// POSTKIT_RANDOM_HEADERS=N sends N messages of 40 headers, for a
	// longer hunt; POSTKIT_RANDOM_SEED picks another seed.
	if n, err := strconv.Atoi(os.Getenv("POSTKIT_RANDOM_HEADERS")); err == nil && n > 0 {
		count = n
	}
	if n, err := strconv.ParseInt(os.Getenv("POSTKIT_RANDOM_SEED"), 10, 64); err == nil {
		seed = n
	}
	rng := rand.New(rand.NewSource(seed))
	var msgs []oracleMsg
	for m := 0; m < count; m++ {
		var hs []string
		for h := 0; h < 40; h++ {
			var b strings.Builder
			n := 1 + rng.Intn(14)
			for i := 0; i < n; i++ {
				b.WriteString(pieces[rng.Intn(len(pieces))])
			}
			v := strings.TrimRight(b.String(), " \t\n")
			// A continuation line must hold more than white space, or
			// the header would end there.
			for strings.Contains(v, "\n \n") || strings.Contains(v, "\n\t\n") || strings.Contains(v, "\n\n") {
				v = strings.NewReplacer("\n \n", "\n ", "\n\t\n", "\n\t", "\n\n", "\n").Replace(v)
			}
			v = strings.TrimRight(v, " \t\n")
			hs = append(hs, names[rng.Intn(len(names))]+": "+v)
		}
		msgs = append(msgs, oracleMsg{remote: m%3 == 2, sender: "s@x.test", rcpts: []string{"x@y.test"}, headers: hs})
	}
	n := compareOracle(t, oracleCase{name: "random", main: main, files: mainFiles, msgs: msgs})
	t.Logf("%d addresses and headers compared with Postfix", n)
}
