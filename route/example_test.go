package route_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/route"
)

// A main.cf with a local domain, a relay domain behind a gateway, a
// smarthost for everything else, and an inline transport table.
const mainCF = `
myhostname = mx.example.com
mydestination = $myhostname, example.com, localhost
relay_domains = partner.example
relayhost = [smarthost.example.net]:587
recipient_delimiter = +
transport_maps = inline:{ partner.example=smtp:[gw.partner.example], lists@example.com=lmtp:unix:/run/lmtp, { spam.example = error:5.7.1 no mail for you } }
virtual_alias_domains = alias.example
`

func Example() {
	cfg, err := config.Parse("main.cf", strings.NewReader(mainCF))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	r, err := route.FromConfig(ctx, cfg, route.Options{})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	for _, rcpt := range []string{
		"joe+news@example.com",
		"lists@example.com",
		"bob@partner.example",
		"carol@elsewhere.example",
		"dave%elsewhere.example@example.com",
		"x@spam.example",
	} {
		res, err := r.Resolve(ctx, "alice@example.com", rcpt)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%-35s %-8s %s:%s  %s\n", rcpt, res.Class, res.Transport, res.Nexthop, res.Recipient)
	}
	// Output:
	// joe+news@example.com                local    local:mx.example.com  joe+news@example.com
	// lists@example.com                   local    lmtp:unix:/run/lmtp  lists@example.com
	// bob@partner.example                 relay    smtp:[gw.partner.example]  bob@partner.example
	// carol@elsewhere.example             default  smtp:[smarthost.example.net]:587  carol@elsewhere.example
	// dave%elsewhere.example@example.com  default  smtp:[smarthost.example.net]:587  dave@elsewhere.example
	// x@spam.example                      default  error:5.7.1 no mail for you  x@spam.example
}

// The queue's scheduler asks Route; failures come back as
// *queue.RouteError, which tells it to bounce or defer.
func ExampleResolver_Route() {
	cfg, err := config.Parse("main.cf", strings.NewReader(mainCF))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	r, err := route.FromConfig(ctx, cfg, route.Options{})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	env := &cleanup.Envelope{Sender: "alice@example.com"}
	for _, rcpt := range []string{"bob@partner.example", "nobody@alias.example", "x@a..b"} {
		rt, err := r.Route(ctx, env, rcpt)
		var re *queue.RouteError
		if errors.As(err, &re) {
			fmt.Printf("%s: permanent=%v %s %s\n", rcpt, re.Permanent, re.DSN, re.Reason)
			continue
		}
		fmt.Printf("%s: %s %s\n", rcpt, rt.Transport, rt.Nexthop)
	}
	// Output:
	// bob@partner.example: smtp [gw.partner.example]
	// nobody@alias.example: permanent=true 5.1.1 User unknown in virtual alias table
	// x@a..b: permanent=true 5.1.3 bad address syntax
}

func ExampleParseNexthop() {
	for _, s := range []string{"[mail.example.com]:587", "example.com", "unix:/run/dovecot/lmtp", "inet:[192.0.2.7]:24"} {
		n, err := route.ParseNexthop(s)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%-24s network=%s host=%q port=%q noMX=%v path=%q\n", s, n.Network, n.Host, n.Port, n.NoMX, n.Path)
	}
	// Output:
	// [mail.example.com]:587   network=inet host="mail.example.com" port="587" noMX=true path=""
	// example.com              network=inet host="example.com" port="" noMX=false path=""
	// unix:/run/dovecot/lmtp   network=unix host="" port="" noMX=false path="/run/dovecot/lmtp"
	// inet:[192.0.2.7]:24      network=inet host="192.0.2.7" port="24" noMX=true path=""
}
