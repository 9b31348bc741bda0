package config_test

import (
	"fmt"
	"strings"

	"github.com/postkit-mail/postkit/config"
)

// Parse main.cf text and read parameters the way Postfix does: values are
// expanded when read, defaults fill in what is not set, and time values
// without a unit use the parameter's own unit.
func ExampleParse() {
	mainCF := `compatibility_level = 3.6
myhostname = mail.example.com
mydestination = $myhostname, localhost.$mydomain
maximal_queue_lifetime = 3
# an indented line continues the previous one
smtpd_recipient_restrictions = permit_mynetworks,
    reject_unauth_destination
`
	cfg, err := config.Parse("main.cf", strings.NewReader(mainCF))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Get("mydomain"))
	fmt.Println(cfg.Get("mydestination"))
	fmt.Println(cfg.List("smtpd_recipient_restrictions"))
	lifetime, _ := cfg.Duration("maximal_queue_lifetime")
	fmt.Println(lifetime)
	fmt.Println(cfg.Get("myorigin"))
	// Output:
	// example.com
	// mail.example.com, localhost.example.com
	// [permit_mynetworks reject_unauth_destination]
	// 72h0m0s
	// mail.example.com
}
