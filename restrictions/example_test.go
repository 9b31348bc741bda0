package restrictions_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/restrictions"
)

// A mail policy written as main.cf text, checked in a unit test with no
// network: what would Postfix answer to each RCPT TO?
func Example() {
	ctx := context.Background()
	mainCF := `
compatibility_level = 3.6
myhostname = mx.example.com
mydestination = $myhostname, example.com
mynetworks = 127.0.0.0/8 192.0.2.0/24
smtpd_recipient_restrictions =
	check_sender_access inline:{ {spammer@example.net=REJECT Go away} }
	reject_non_fqdn_recipient
local_recipient_maps = inline:{ alice=yes, bob=yes }
`
	cfg, err := config.Parse("main.cf", strings.NewReader(mainCF))
	if err != nil {
		panic(err)
	}
	c, err := restrictions.FromConfig(ctx, cfg, restrictions.Options{})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	client := netip.MustParseAddr("198.51.100.9")
	for _, t := range []struct{ from, to string }{
		{"carol@example.org", "alice@example.com"},   // local user: accepted
		{"carol@example.org", "nobody@example.com"},  // unknown local user
		{"carol@example.org", "someone@example.org"}, // relaying for a stranger
		{"spammer@example.net", "bob@example.com"},   // blocked sender
	} {
		d := c.Check(ctx, restrictions.StageRecipient, &restrictions.Snapshot{
			ClientAddr: client, ClientName: "mail.example.org", Helo: "mail.example.org",
			Sender: t.from, Recipient: t.to,
		})
		if d.Accepted() {
			fmt.Println(t.to, "accepted")
		} else {
			fmt.Println(d.Reply)
		}
	}
	// Output:
	// alice@example.com accepted
	// 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in local recipient table
	// 454 4.7.1 <someone@example.org>: Relay access denied
	// 554 5.7.1 <spammer@example.net>: Sender address rejected: Go away
}

// An application's own policy as a Go function, used by name in a
// restriction list, next to a table the application supplies.
func ExampleConfig_funcs() {
	ctx := context.Background()
	cfg := restrictions.DefaultConfig()
	cfg.Funcs = map[string]restrictions.Func{
		"check_quota": func(ctx context.Context, stage restrictions.Stage, s *restrictions.Snapshot) (string, error) {
			if s.Recipient == "full@example.com" {
				return "452 4.2.2 Mailbox full", nil
			}
			return "DUNNO", nil
		},
	}
	cfg.Tables = map[string]maps.Map{"app:vip": maps.StaticMap{"boss@example.com": "OK"}}
	cfg.RecipientRestrictions = "check_sender_access app:vip, check_quota"
	cfg.Mynetworks = []string{"0.0.0.0/0"} // this example trusts every client
	c, err := restrictions.New(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	s := &restrictions.Snapshot{ClientAddr: netip.MustParseAddr("192.0.2.1"),
		Sender: "someone@example.com", Recipient: "full@example.com"}
	fmt.Println(c.Check(ctx, restrictions.StageRecipient, s).Reply)
	s.Sender = "boss@example.com"
	fmt.Println(c.Check(ctx, restrictions.StageRecipient, s).Accepted())
	// Output:
	// 452 4.2.2 <full@example.com>: Recipient address rejected: Mailbox full
	// true
}
