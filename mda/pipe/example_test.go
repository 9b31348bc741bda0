package pipe_test

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/mda/pipe"
	"github.com/postkit-mail/postkit/queue"
)

func ExampleNew() {
	svcs, err := mda.ParseMasterCF("master.cf", strings.NewReader(
		"filter unix - n n - - pipe\n"+
			"  flags=Rq user=nobody argv=/bin/sh -c {grep -q spam && exit 67; exit 0} sh ${recipient}\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	agent, err := pipe.New(svcs[0], config.Default(), pipe.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, body := range []string{"ham\r\n", "spam\r\n"} {
		res := agent.Deliver(context.Background(), &queue.Delivery{
			Envelope:   &cleanup.Envelope{Sender: "alice@example.org"},
			Recipients: []queue.Recipient{{Addr: "bob@example.net"}},
			Open: func() (io.ReadCloser, error) {
				return io.NopCloser(strings.NewReader("Subject: test\r\n\r\n" + body)), nil
			},
		})
		r := res[0]
		fmt.Printf("relay=%s, dsn=%s, status=%s (%s)\n", r.Relay, r.DSN, r.Outcome, r.Reason)
	}
	// Output:
	// relay=filter, dsn=2.0.0, status=delivered (delivered via filter service)
	// relay=filter, dsn=5.1.1, status=failed (user unknown)
}
