package auth

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
)

// An AUTH PLAIN round trip over a UNIX socket, one request at a time.
//
//	server=postkit/client=raw   DovecotServer, minimal line client
//	server=dovecot/client=raw   Dovecot 2.3 (the baseline for the server)
//	server=dovecot/client=postkit  DovecotClient.Verify against Dovecot
//	                               (against client=raw: the client's cost)
//	server=postkit/client=postkit  both sides postkit
//
// Both servers read the same passwd-file, with a {PLAIN} password: the
// benchmark measures the protocol and the lookup, not hashing. postkit's
// server runs the package's Authenticator.
func BenchmarkDovecotPlain(b *testing.B) {
	// Started here, not in the sub-benchmarks: those run several times
	// and a cleanup of theirs would stop Dovecot after the first run.
	dv := startDovecotLogging(b, "plain login", false)
	ours := startDvTestServer(b, &DovecotServer{Backend: dvAuthenticator(b, dv, "PLAIN", "LOGIN")})
	b.Run("server=postkit/client=raw", func(b *testing.B) { benchDvRaw(b, ours) })
	b.Run("server=dovecot/client=raw", func(b *testing.B) { benchDvRaw(b, dv.Socket) })
	b.Run("server=dovecot/client=postkit", func(b *testing.B) { benchDvClient(b, dv.Socket) })
	b.Run("server=postkit/client=postkit", func(b *testing.B) { benchDvClient(b, ours) })
	b.Run("server=postkit/client=postkit/parallel", func(b *testing.B) {
		cl, err := DialDovecot(context.Background(), "unix", ours, &DovecotClientOptions{Logger: dvQuietLog})
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req := DovecotRequest{NoPenalty: true}
			for pb.Next() {
				if _, err := cl.Verify(context.Background(), req, "alice", "secret"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// benchDvRaw authenticates with hand-written lines on one connection.
func benchDvRaw(b *testing.B, path string) {
	nc, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	r := bufio.NewReader(nc)
	if _, err := nc.Write([]byte("VERSION\t1\t2\nCPID\t1\n")); err != nil {
		b.Fatal(err)
	}
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		if l == "DONE\n" {
			break
		}
	}
	resp := dvB64("\x00alice\x00secret")
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := strconv.Itoa(i + 1)
		buf = append(buf[:0], "AUTH\t"...)
		buf = append(buf, id...)
		buf = append(buf, "\tPLAIN\tservice=smtp\tno-penalty\tresp="...)
		buf = append(buf, resp...)
		buf = append(buf, '\n')
		if _, err := nc.Write(buf); err != nil {
			b.Fatal(err)
		}
		l, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, "OK\t"+id+"\t") {
			b.Fatalf("reply %q, %v", l, err)
		}
	}
}

func benchDvClient(b *testing.B, path string) {
	cl, err := DialDovecot(context.Background(), "unix", path, &DovecotClientOptions{Logger: dvQuietLog})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	req := DovecotRequest{ClientInfo: ClientInfo{Service: "smtp"}, NoPenalty: true}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := cl.Verify(ctx, req, "alice", "secret"); err != nil {
			b.Fatal(err)
		}
	}
}
