package imapserver

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

func greeting(t *testing.T, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	l, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return c, br, l
}

// Without TLS and with plaintext logins disabled (Dovecot's default),
// the server announces LOGINDISABLED and STARTTLS and refuses LOGIN;
// after STARTTLS, and over implicit TLS, logging in works.
func TestTLSAndLoginDisabled(t *testing.T) {
	e := newEnv(t)
	opts := e.options()
	opts.AllowPlaintextAuth = false
	opts.TLSConfig = selfSigned(t)
	s, addr := e.start(t, opts)

	c, br, g := greeting(t, addr)
	if !strings.Contains(g, "LOGINDISABLED") || !strings.Contains(g, "STARTTLS") {
		t.Errorf("greeting %q", g)
	}
	c.Write([]byte("a LOGIN alice secret\r\n"))
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "a NO") {
		t.Errorf("LOGIN before TLS: %q", l)
	}

	client := &tls.Config{InsecureSkipVerify: true}
	ic, err := imapclient.DialStartTLS(addr, &imapclient.Options{TLSConfig: client})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login("alice", "secret").Wait(); err != nil {
		t.Fatalf("LOGIN after STARTTLS: %v", err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeTLS(ln)
	tc, err := imapclient.DialTLS(ln.Addr().String(), &imapclient.Options{TLSConfig: client})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.Authenticate(plainClient("alice", "secret")); err != nil {
		t.Fatalf("AUTHENTICATE over implicit TLS: %v", err)
	}
	ic.Logout().Wait()
	tc.Logout().Wait()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.log.String(), "method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=") || strings.Count(e.log.String(), ", TLS, session=") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks TLS logins:\n%s", e.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConnectionLimits(t *testing.T) {
	e := newEnv(t)
	opts := e.options()
	opts.MaxIPConnections = 3
	opts.MaxUserIPConnections = 2
	_, addr := e.start(t, opts)

	var clients []*imapclient.Client
	for i := 0; i < 3; i++ {
		c, err := imapclient.DialInsecure(addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	// A fourth connection from the same address is turned away.
	_, _, g := greeting(t, addr)
	if !strings.HasPrefix(g, "* BYE") {
		t.Errorf("4th connection greeting %q", g)
	}
	// Two sessions of alice are allowed, the third login is refused.
	for i, c := range clients {
		err := c.Login("alice", "secret").Wait()
		if i < 2 && err != nil {
			t.Errorf("login %d: %v", i, err)
		}
		if i == 2 && (err == nil || !strings.Contains(err.Error(), "mail_max_userip_connections")) {
			t.Errorf("3rd login: %v", err)
		}
	}
	// A slot frees up when a session ends.
	clients[0].Logout().Wait()
	clients[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := clients[2].Login("alice", "secret").Wait(); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("login after a logout: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The idle timeout closes a connection that sends nothing.
func TestIdleTimeout(t *testing.T) {
	e := newEnv(t)
	opts := e.options()
	opts.IdleTimeout = 300 * time.Millisecond
	_, addr := e.start(t, opts)
	c, br, _ := greeting(t, addr)
	c.Write([]byte("a LOGIN alice secret\r\n"))
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("login: %q", l)
	}
	start := time.Now()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := br.ReadString('\n')
	for err == nil {
		_, err = br.ReadString('\n')
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("connection not closed after the idle timeout (%v)", time.Since(start))
	}
}
