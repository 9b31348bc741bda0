package mda_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/queue"
)

// TestBuiltinAgentsMatchPostfix routes one message to discard(8),
// error(8) and retry(8) entries of a private Postfix's transport_maps,
// and to a transport master.cf does not have, and compares each
// recipient's dsn, status and reason with what the Dispatcher and the
// built-in agents answer for the same transport_maps entries.
func TestBuiltinAgentsMatchPostfix(t *testing.T) {
	table := map[string]string{
		"a.test": "error:5.1.1 go away",
		"b.test": "error:",
		"c.test": "discard:",
		"d.test": "discard:gone fishing",
		"e.test": "retry:",
		"f.test": "retry:4.7.1 later",
		"g.test": "nosuch:",
		"h.test": "error:no dsn here",
		"i.test": "error:4.7.1 temporary",
		"j.test": "retry:5.1.1 permanent",
	}
	var src strings.Builder
	var domains []string
	for d, v := range table {
		src.WriteString(d + " " + v + "\n")
		domains = append(domains, d)
	}
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main: "transport_maps = texthash:$config_directory/transport\nmydestination =\n" +
			"smtpd_reject_unlisted_recipient = no\nrelay_domains = " + strings.Join(domains, " ") + "\n",
		Files: []oracle.File{{Name: "transport", Data: src.String()}},
	})
	c := p.Session(t)
	c.Cmd("EHLO client.test")
	c.Cmd("MAIL FROM:<s@x.test>")
	for _, d := range domains {
		if r := c.Cmd("RCPT TO:<u@" + d + ">"); !strings.HasPrefix(r.String(), "250") {
			t.Fatalf("RCPT u@%s: %s", d, r)
		}
	}
	c.Cmd("DATA")
	c.Message(oracle.MessageBody)
	c.Close()

	disp := &mda.Dispatcher{Agents: map[string]queue.Deliverer{
		"error": mda.Error(), "retry": mda.Retry(), "discard": mda.Discard(),
	}}
	words := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	re := regexp.MustCompile(`to=<u@[a-z.]+>, relay=(\S+), delay=\S+, delays=\S+, (dsn=.*)$`)
	for _, d := range domains {
		line := p.WaitLog(t, 30*time.Second, "to=<u@"+d+">", "status=")
		m := re.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unexpected log line %q", line)
		}
		transport, nexthop, _ := strings.Cut(table[d], ":")
		res := disp.Deliver(context.Background(), delivery(transport, nexthop, "u@"+d))[0]
		relay := res.Relay
		if relay == "" {
			relay = "none"
		}
		got := "dsn=" + res.DSN + ", status=" + words[res.Outcome] + " (" + res.Reason + ")"
		if relay != m[1] || got != m[2] {
			t.Errorf("%s (%s):\npostfix: relay=%s, %s\npostkit: relay=%s, %s", d, table[d], m[1], m[2], relay, got)
		}
	}
}
