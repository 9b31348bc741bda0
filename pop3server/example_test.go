package pop3server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/mailbox"
	"github.com/postkit-mail/postkit/pop3server"
)

// A POP3 server for one user whose Maildir is HOME/Maildir, and a client
// session reading the message Postfix-style delivery put there.
func Example() {
	home, _ := os.MkdirTemp("", "pop3example")
	defer os.RemoveAll(home)
	maildir := filepath.Join(home, "Maildir")
	mailbox.DeliverMaildir(context.Background(), maildir,
		strings.NewReader("Subject: hello\n\n.signature line\n"), mailbox.MaildirOptions{Create: true})

	srv := &pop3server.Server{
		Auth: &auth.Authenticator{
			PassDB: auth.PassDBFunc(func(_ context.Context, user string) (auth.Credentials, error) {
				if user != "alice" {
					return auth.Credentials{}, auth.ErrUnknownUser
				}
				return auth.Credentials{User: "alice", Password: "{PLAIN}secret"}, nil
			}),
			UserDB: auth.UserDBFunc(func(_ context.Context, user string) (auth.User, error) {
				return auth.User{Name: user, Home: home}, nil
			}),
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()

	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	r := bufio.NewReader(c)
	show := func() string {
		l, _ := r.ReadString('\n')
		fmt.Println(strings.TrimSuffix(l, "\r\n"))
		return l
	}
	show()
	for _, cmd := range []string{"USER alice", "PASS secret", "STAT", "RETR 1", "QUIT"} {
		fmt.Fprintf(c, "%s\r\n", cmd)
		if show(); cmd == "RETR 1" {
			for show() != ".\r\n" {
			}
		}
	}
	// Output:
	// +OK postkit ready.
	// +OK
	// +OK Logged in.
	// +OK 1 35
	// +OK 35 octets
	// Subject: hello
	//
	// ..signature line
	// .
	// +OK Logging out.
}
