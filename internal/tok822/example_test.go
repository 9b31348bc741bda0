package tok822_test

import (
	"fmt"

	"github.com/postkit-mail/postkit/internal/tok822"
)

func ExampleContext_Rewrite() {
	c := tok822.Context{Origin: "example.com", AppendAtOrigin: true, SwapBangPath: true, AllowPercentHack: true}
	for _, a := range []string{"joe", "host!joe", "joe%host", `"a b"@x.`} {
		fmt.Println(tok822.Internalize(c.Rewrite(tok822.Scan(a))))
	}
	// Output:
	// joe@example.com
	// joe@host
	// joe@host
	// a b@x
}
