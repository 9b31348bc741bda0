package rewrite_test

import (
	"context"
	"fmt"

	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/rewrite"
)

func Example() {
	ctx := context.Background()
	cfg := rewrite.Defaults("example.com", "example.com")
	cfg.RecipientDelimiter = "+"
	cfg.CanonicalMaps = maps.List{maps.StaticMap{"joe@example.com": "joe.public@example.com"}}
	cfg.VirtualAliasMaps = maps.List{maps.StaticMap{
		"sales@example.com": "ann@example.net, bob@example.net",
	}}
	cfg.MasqueradeDomains = []string{"example.com"}
	r, err := rewrite.New(cfg)
	if err != nil {
		panic(err)
	}

	sender, _ := r.Sender(ctx, "joe", false)
	fmt.Println("sender:", sender)

	rcpt, _ := r.Recipient(ctx, "sales+q3", false)
	list, _ := r.VirtualAlias(ctx, rcpt)
	fmt.Println("recipients:", list)

	value, changed, _ := r.HeaderLine(ctx, "From", " Joe <joe@mail.example.com>\r\n", "", false)
	fmt.Printf("From:%q %v\n", value, changed)
	// Output:
	// sender: joe.public@example.com
	// recipients: [ann+q3@example.net bob+q3@example.net]
	// From:" Joe <joe@example.com>\r\n" true
}
