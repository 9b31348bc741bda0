package rewrite

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// sinkMsg is one message a sink received from Postfix's SMTP client.
type sinkMsg struct {
	sender  string
	rcpts   []string
	headers []string // logical headers, "\n" between lines
}

// startSink runs a minimal SMTP server on a loopback port that records
// every message, for Postfix's smtp(8) to deliver to.
func startSink(t *testing.T) (addr string, msgs <-chan sinkMsg) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan sinkMsg, 100)
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				r := bufio.NewReader(c)
				fmt.Fprintf(c, "220 sink.test ESMTP\r\n")
				var m sinkMsg
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					verb := strings.ToUpper(line)
					switch {
					case strings.HasPrefix(verb, "EHLO"), strings.HasPrefix(verb, "HELO"):
						fmt.Fprintf(c, "250 sink.test\r\n")
					case strings.HasPrefix(verb, "MAIL FROM:"):
						m = sinkMsg{sender: pathArg(line[10:])}
						fmt.Fprintf(c, "250 ok\r\n")
					case strings.HasPrefix(verb, "RCPT TO:"):
						m.rcpts = append(m.rcpts, pathArg(line[8:]))
						fmt.Fprintf(c, "250 ok\r\n")
					case verb == "DATA":
						fmt.Fprintf(c, "354 go\r\n")
						inHeaders := true
						for {
							l, err := r.ReadString('\n')
							if err != nil {
								return
							}
							l = strings.TrimRight(l, "\r\n")
							if l == "." {
								break
							}
							l = strings.TrimPrefix(l, ".")
							if l == "" {
								inHeaders = false
							}
							if !inHeaders {
								continue
							}
							if (l[0] == ' ' || l[0] == '\t') && len(m.headers) > 0 {
								m.headers[len(m.headers)-1] += "\n" + l
							} else {
								m.headers = append(m.headers, l)
							}
						}
						ch <- m
						fmt.Fprintf(c, "250 ok\r\n")
					case verb == "QUIT":
						fmt.Fprintf(c, "221 bye\r\n")
						return
					default:
						fmt.Fprintf(c, "250 ok\r\n")
					}
				}
			}()
		}
	}()
	return l.Addr().String(), ch
}

// pathArg returns the address of a MAIL FROM or RCPT TO argument in
// internal form, without ESMTP parameters.
func pathArg(s string) string {
	if i := strings.LastIndexByte(s, '>'); i >= 0 {
		s = s[:i+1]
	}
	return pathInternal(strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">"))
}

// TestOracleGeneric delivers through Postfix's SMTP client with
// smtp_generic_maps to a sink and compares the envelope and headers it
// sends with cleanup's rewriting followed by Generic and GenericHeader.
func TestOracleGeneric(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	sink, got := startSink(t)
	// Nothing is held and nothing is local: every recipient goes to the
	// sink through the relayhost.
	base := strings.Replace(baseMain, "smtpd_data_restrictions = check_client_access static:HOLD\n", "", 1)
	base = strings.Replace(base, "mydestination = $myorigin, localhost.$mydomain, mail.example.com\n", "mydestination =\n", 1)
	main := `
recipient_delimiter = +
default_transport = smtp
relay_transport = smtp
relayhost = [` + strings.Replace(sink, ":", "]:", 1) + `
smtp_generic_maps = hash:$config_directory/generic, regexp:$config_directory/generic.re
propagate_unmatched_extensions = canonical, virtual, generic
smtp_tls_security_level = none
`
	files := []oracle.File{
		{Name: "generic", Postmap: "hash", Data: `
joe@origin.example      joe.public@example.com
@origin.example         @example.com
chain@g.test            chain2@g.test
chain2@g.test           chain3@g.test
multi@g.test            one@g.test, two@g.test
local                   local-generic@example.com
"q x"@g.test            qx@example.com
`},
		{Name: "generic.re", Data: "/^re-(.*)@g\\.test$/  $1@re.example.com\n"},
	}
	msgs := []oracleMsg{
		{sender: "joe", rcpts: []string{"chain@g.test", "multi@g.test", "anyone@origin.example", "x+y@origin.example", "re-abc@g.test", `"q x"@g.test`, "other@else.test", "joe+tag@origin.example"},
			headers: []string{
				"From: Joe <joe>, local",
				"To: chain@g.test, multi@g.test (Multi), \"q x\"@g.test, re-abc@g.test, group: x+y@origin.example, nobody@else.test;",
				"Cc: untouched@else.test",
				"Reply-To: joe+tag@origin.example",
				"Subject: joe@origin.example",
			}},
		{sender: "", rcpts: []string{"postmaster@else.test"}, headers: []string{"From: MAILER-DAEMON", "To: postmaster@else.test"}},
		{sender: "chain@g.test", rcpts: []string{"local@origin.example"}, headers: []string{"From: chain@g.test", "To: Someone With A Long Name <local@origin.example>, Another Long Name <joe@origin.example>"}},
	}
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: base + main, Files: files})
	for i, m := range msgs {
		s := p.Session(t)
		s.Cmd("XCLIENT ADDR=127.0.0.1 NAME=localhost")
		s.Cmd("EHLO client.test")
		if r := s.Cmd("MAIL FROM:<" + m.sender + ">"); r.Code != 250 {
			t.Fatalf("MAIL: %v", r)
		}
		for _, rc := range m.rcpts {
			if r := s.Cmd("RCPT TO:<" + rc + ">"); r.Code != 250 {
				t.Fatalf("RCPT %s: %v", rc, r)
			}
		}
		s.Cmd("DATA")
		hs := append([]string{fmt.Sprintf("Message-Id: <%d@msg.test>", i)}, m.headers...)
		if r := s.Message(strings.Join(hs, "\n") + "\n\nbody\n"); r.Code != 250 {
			t.Fatalf("DATA: %v", r)
		}
		s.Close()
	}
	byID := map[string]sinkMsg{}
	deadline := time.After(60 * time.Second)
	for len(byID) < len(msgs) {
		select {
		case m := <-got:
			for _, h := range m.headers {
				if strings.HasPrefix(h, "Message-Id: ") {
					byID[h] = m
				}
			}
		case <-deadline:
			t.Fatalf("the sink got %d of %d messages; Postfix log:\n%s", len(byID), len(msgs), p.Log())
		}
	}

	ctx := context.Background()
	cfg, err := config.Load(p.ConfigDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := FromConfig(ctx, cfg, "smtp")
	if err != nil {
		t.Fatal(err)
	}
	r.log = quiet() // the expected warnings of loops and multi-valued entries
	compared := 0
	for i, m := range msgs {
		pf := byID[fmt.Sprintf("Message-Id: <%d@msg.test>", i)]
		sender, _ := r.Sender(ctx, pathInternal(m.sender), false)
		if sender, err = r.Generic(ctx, sender); err != nil {
			t.Fatal(err)
		}
		if pf.sender != sender {
			t.Errorf("msg %d: sender: Postfix %q, rewrite %q", i, pf.sender, sender)
		}
		var rcpts []string
		for _, rc := range m.rcpts {
			a, _ := r.Recipient(ctx, pathInternal(rc), false)
			g, err := r.Generic(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			rcpts = append(rcpts, g)
		}
		// qmgr sorts the recipients of a delivery.
		slices.Sort(pf.rcpts)
		slices.Sort(rcpts)
		if fmt.Sprint(pf.rcpts) != fmt.Sprint(rcpts) {
			t.Errorf("msg %d: recipients:\n Postfix %q\n rewrite %q", i, pf.rcpts, rcpts)
		}
		compared += 1 + len(rcpts)
		var pfh []string
		for _, h := range pf.headers {
			name, _, _ := strings.Cut(h, ":")
			switch strings.ToLower(name) {
			case "received", "message-id", "date":
				continue
			}
			pfh = append(pfh, h)
		}
		var want []string
		for _, h := range m.headers {
			name, value, _ := strings.Cut(h, ":")
			v := strings.ReplaceAll(value, "\n", "\r\n")
			if nv, changed, err := r.HeaderLine(ctx, name, v, "", false); err != nil {
				t.Fatal(err)
			} else if changed {
				v = nv
			}
			v, _, err := r.GenericHeader(ctx, name, v)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, name+":"+strings.ReplaceAll(v, "\r\n", "\n"))
		}
		if strings.Join(pfh, "\n") != strings.Join(want, "\n") {
			t.Errorf("msg %d headers:\n Postfix:\n%s\n rewrite:\n%s", i, strings.Join(pfh, "\n"), strings.Join(want, "\n"))
		}
		compared += len(want)
	}
	t.Logf("%d addresses and headers compared with Postfix's SMTP client", compared)
}
