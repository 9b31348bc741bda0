package maps_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/postkit-mail/postkit/maps"
)

// Open a Postfix table by its "type:name" and look keys up. Fixed-key
// tables fold the key to lower case; a miss is ok == false, not an error.
func ExampleOpen() {
	ctx := context.Background()
	m, err := maps.Open(ctx, "inline:{ joe@example.com=jdoe@example.net, {postmaster = root, admin} }")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, key := range []string{"Joe@Example.COM", "postmaster", "nobody"} {
		value, ok, err := m.Lookup(ctx, key)
		fmt.Printf("%s: %q %v %v\n", key, value, ok, err)
	}
	// Output:
	// Joe@Example.COM: "jdoe@example.net" true <nil>
	// postmaster: "root, admin" true <nil>
	// nobody: "" false <nil>
}

// A cidr: table answers for client IP addresses: the first matching rule
// wins, and anything that is not a bare IP address never matches.
func ExampleOpen_cidr() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "clients.cidr")
	os.WriteFile(file, []byte("192.0.2.0/24 REJECT\n2001:db8::/32 OK\n0.0.0.0/0 DUNNO\n"), 0o644)

	ctx := context.Background()
	m, err := maps.Open(ctx, "cidr:"+file)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer maps.Close(m)
	for _, key := range []string{"192.0.2.7", "2001:db8::1", "198.51.100.1", "[192.0.2.7]"} {
		value, ok, _ := m.Lookup(ctx, key)
		fmt.Printf("%s: %q %v\n", key, value, ok)
	}
	// Output:
	// 192.0.2.7: "REJECT" true
	// 2001:db8::1: "OK" true
	// 198.51.100.1: "DUNNO" true
	// [192.0.2.7]: "" false
}

// A user's own Go code can serve as a table: here a FuncMap that any part
// reading tables through maps.Map accepts.
func ExampleFuncMap() {
	users := map[string]string{"alice": "/home/alice/Maildir/"}
	var m maps.Map = maps.FuncMap(func(ctx context.Context, key string) (string, bool, error) {
		v, ok := users[key] // key arrives folded to lower case
		return v, ok, nil
	})
	v, ok, _ := m.Lookup(context.Background(), "Alice")
	fmt.Println(v, ok)
	// Output: /home/alice/Maildir/ true
}
