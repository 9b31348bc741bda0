package mda_test

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/queue"
)

// A Dispatcher sends each delivery request to the agent of its
// transport, as transport_maps chose it.
func ExampleDispatcher() {
	d := &mda.Dispatcher{Agents: map[string]queue.Deliverer{
		"discard": mda.Discard(),
		"error":   mda.Error(),
		"retry":   mda.Retry(),
	}}
	for _, route := range []string{"error:5.1.1 user has moved", "discard:", "retry:4.7.1 try later", "nosuch:"} {
		transport, nexthop, _ := strings.Cut(route, ":")
		res := d.Deliver(context.Background(), &queue.Delivery{
			Transport: transport, Nexthop: nexthop,
			Envelope:   &cleanup.Envelope{Sender: "alice@example.org"},
			Recipients: []queue.Recipient{{Addr: "bob@example.net"}},
			Open: func() (io.ReadCloser, error) {
				return io.NopCloser(strings.NewReader("Subject: hi\r\n\r\nhi\r\n")), nil
			},
		})
		fmt.Printf("%-8s dsn=%s, status=%s (%s)\n", transport, res[0].DSN, res[0].Outcome, res[0].Reason)
	}
	// Output:
	// error    dsn=5.1.1, status=failed (user has moved)
	// discard  dsn=2.0.0, status=delivered (example.net)
	// retry    dsn=4.7.1, status=delayed (try later)
	// nosuch   dsn=4.3.0, status=delayed (mail transport unavailable)
}

// ParseMasterCF reads the services of a master.cf file; a pipe service's
// arguments become its command line.
func ExampleParseMasterCF() {
	text := `# transports
smtp      unix  -       -       y       -       -       smtp
dovecot   unix  -       n       n       -       -       pipe
  flags=DRhu user=vmail argv=/usr/lib/dovecot/dovecot-lda -f ${sender} -d ${recipient}
relay     unix  -       -       n       -       -       smtp
  -o smtp_helo_timeout=5
`
	svcs, err := mda.ParseMasterCF("master.cf", strings.NewReader(text))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range svcs {
		fmt.Printf("%s (line %d): %s %q %v\n", s.Name, s.Line, s.Command, s.Args, s.Options)
	}
	// Output:
	// smtp (line 2): smtp [] map[]
	// dovecot (line 3): pipe ["flags=DRhu" "user=vmail" "argv=/usr/lib/dovecot/dovecot-lda" "-f" "${sender}" "-d" "${recipient}"] map[]
	// relay (line 5): smtp [] map[smtp_helo_timeout:5]
}
