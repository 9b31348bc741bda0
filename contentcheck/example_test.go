package contentcheck_test

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/postkit-mail/postkit/contentcheck"
	"github.com/postkit-mail/postkit/maps"
)

// A Walker applies header_checks and body_checks while the message
// streams through it, and reports the message-level verdict at Close.
func ExampleConfig_NewWalker() {
	ctx := context.Background()
	headers, err := maps.Open(ctx, "regexp:{{/^X-Spam-Flag:/ IGNORE}, {/^Subject:.*free money/ REJECT 5.7.1 no thanks}}")
	if err != nil {
		panic(err)
	}
	body, err := maps.Open(ctx, "pcre:{{/^unsubscribe/ HOLD}}")
	if err != nil {
		panic(err)
	}
	c := &contentcheck.Config{HeaderChecks: headers, MIMEHeaderChecks: headers, NestedHeaderChecks: headers, BodyChecks: body}

	var out bytes.Buffer
	w := c.NewWalker(ctx, &out, contentcheck.Hooks{}, contentcheck.LogInfo{QueueID: "4ABCDEF"})
	io.WriteString(w, "Subject: hello\r\nX-Spam-Flag: YES\r\n\r\nhi\r\nunsubscribe here\r\n")
	v, err := w.Close()
	fmt.Printf("%q hold=%v err=%v\n", out.String(), v.Hold, err)

	out.Reset()
	w = c.NewWalker(ctx, &out, contentcheck.Hooks{}, contentcheck.LogInfo{QueueID: "4ABCDF0"})
	io.WriteString(w, "Subject: free money\r\n\r\nbody\r\n")
	v, _ = w.Close()
	fmt.Println(v.Reject)
	// Output:
	// "Subject: hello\r\n\r\nhi\r\nunsubscribe here\r\n" hold=true err=<nil>
	// 550 5.7.1 no thanks
}

func ExampleParseAction() {
	a := contentcheck.ParseAction("REJECT 4.7.1 try again later")
	fmt.Println(a.Kind, a.Reply)
	// Output: REJECT 451 4.7.1 try again later
}
