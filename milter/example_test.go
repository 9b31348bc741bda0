package milter_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/milter"
)

// A message goes through the milters configured like smtpd_milters; the
// result says whether to reject, discard or hold it, and Apply writes the
// message with the milters' changes.
func ExampleConfig_Run() {
	specs, err := milter.ParseList("{ unix:/nonexistent/opendkim.sock, default_action = accept }")
	if err != nil {
		panic(err)
	}
	cfg := &milter.Config{Milters: specs, CommandTimeout: 10 * time.Second}
	msg := "From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
	env := milter.Envelope{ClientName: "client.example", ClientAddr: "192.0.2.1", ClientPort: 4321,
		Helo: "client.example", Sender: "a@example.com", Recipients: []string{"b@example.org"}, QueueID: "4ABC"}

	// Nothing listens on that socket here: default_action = accept lets
	// the message through unchanged.
	res, err := cfg.Run(context.Background(), env, strings.NewReader(msg))
	if err != nil {
		panic(err)
	}
	switch {
	case res.Reject != nil:
		fmt.Println("reject:", res.Reject)
	case res.Discard:
		fmt.Println("discard")
	default:
		var out bytes.Buffer
		res.Apply(strings.NewReader(msg), &out)
		sender, rcpts := res.Envelope(env.Sender, env.Recipients)
		fmt.Println(sender, rcpts, res.Hold)
	}
	// Output: a@example.com [b@example.org] false
}
