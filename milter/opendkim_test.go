package milter_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/dkim"
	"github.com/postkit-mail/postkit/internal/dkimpy"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/milter"
)

// opendkim is a Debian opendkim running in the foreground on a loopback
// port for one test.
type opendkim struct {
	addr   string // "inet:127.0.0.1:PORT"
	record string // the TXT record of sel._domainkey.example.com
	dir    string
}

func lookTool(t *testing.T, name string) string {
	t.Helper()
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	oracle.Unavailable(t, "%s is not installed (Debian package opendkim / opendkim-tools)", name)
	return ""
}

// startOpenDKIM generates a 2048-bit key with opendkim-genkey and runs
// opendkim in sign-and-verify mode: mail from 127.0.0.1 is signed for
// example.com with selector "sel", other mail is verified against the
// records in dnsData (name -> TXT).
func startOpenDKIM(t *testing.T, canon string, dnsData map[string]string) *opendkim {
	t.Helper()
	bin := lookTool(t, "opendkim")
	keyDir := signingKey(t)
	dir := t.TempDir()
	txt, err := os.ReadFile(filepath.Join(keyDir, "sel.txt"))
	if err != nil {
		t.Fatal(err)
	}
	record := zoneTXT(string(txt))

	var dns strings.Builder
	for name, rec := range dnsData {
		fmt.Fprintf(&dns, "%s %s\n", name, rec)
	}
	if err := os.WriteFile(filepath.Join(dir, "dns"), []byte(dns.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := fmt.Sprintf(`Syslog no
Mode sv
Socket inet:%d@127.0.0.1
Domain example.com
Selector sel
KeyFile %s/sel.private
Canonicalization %s
InternalHosts 127.0.0.1
RequireSafeKeys false
PidFile %s/pid
AuthservID postkit.test
AlwaysAddARHeader true
TestDNSData file:%s/dns
OversignHeaders From
`, port, keyDir, canon, dir, dir)
	confPath := filepath.Join(dir, "opendkim.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-f", "-x", confPath)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting opendkim: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("opendkim did not listen on %s: %v\n%s", addr, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &opendkim{addr: "inet:" + addr, record: record, dir: dir}
}

var (
	keyOnce sync.Once
	keyDir  string
	keyErr  error
)

// TestMain removes the shared signing key after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if keyDir != "" {
		os.RemoveAll(keyDir)
	}
	os.Exit(code)
}

// signingKey makes one opendkim-genkey key (sel, example.com) shared by the
// tests of the run (key generation is the slow part of starting opendkim).
func signingKey(t *testing.T) string {
	genkey := lookTool(t, "opendkim-genkey")
	keyOnce.Do(func() {
		keyDir, keyErr = os.MkdirTemp("", "postkit-opendkim-key")
		if keyErr != nil {
			return
		}
		out, err := exec.Command(genkey, "-b", "2048", "-d", "example.com", "-s", "sel", "-D", keyDir).CombinedOutput()
		if err != nil {
			keyErr = fmt.Errorf("opendkim-genkey: %v\n%s", err, out)
		}
	})
	if keyErr != nil {
		t.Fatal(keyErr)
	}
	return keyDir
}

// zoneTXT joins the quoted strings of a zone-file TXT record.
func zoneTXT(zone string) string {
	var b strings.Builder
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(zone, -1) {
		b.WriteString(m[1])
	}
	return b.String()
}

var signMsg = lines(
	"From: Alice Example <a@example.com>",
	"To: Bob <b@example.org>,",
	"    Carol <c@example.org>",
	"Subject: a signed message",
	"Date: Sat, 28 Nov 2026 04:00:00 +0000",
	"Message-ID: <1@example.com>",
	"",
	"Hello Bob,",
	"",
	"  this line has   spaces and a tab\there.",
	"",
	"",
)

// TestOpenDKIMSigns runs Debian's opendkim as a signing milter: postkit's
// client sends the message, applies the DKIM-Signature opendkim returns,
// and the signature verifies with postkit's dkim package and with the
// Python dkim library (dkimpy, what dkimverify uses).
func TestOpenDKIMSigns(t *testing.T) {
	t.Parallel()
	for _, canon := range []string{"relaxed/relaxed", "simple/simple", "relaxed/simple"} {
		t.Run(canon, func(t *testing.T) {
			od := startOpenDKIM(t, canon, nil)
			c := testConfig(od.addr)
			env := milter.Envelope{ClientName: "localhost", ClientAddr: "127.0.0.1", ClientPort: 5555, Helo: "localhost",
				Sender: "a@example.com", Recipients: []string{"b@example.org"}, QueueID: "4ABC"}
			res, signed := run(t, c, env, signMsg)
			if res.Reject != nil || res.Discard || res.Hold {
				t.Fatalf("opendkim: reject %v discard %v hold %v", res.Reject, res.Discard, res.Hold)
			}
			if !strings.HasPrefix(signed, "DKIM-Signature: ") || !strings.HasSuffix(signed, signMsg) {
				t.Fatalf("signed message:\n%s", signed)
			}
			if !strings.Contains(signed, "c="+canon) {
				t.Errorf("signature not %s:\n%s", canon, signed)
			}

			txt := func(ctx context.Context, name string) ([]string, error) {
				if name == "sel._domainkey.example.com" {
					return []string{od.record}, nil
				}
				return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
			}
			v := &dkim.Verifier{AuthServID: "postkit.test", LookupTXT: txt}
			results, err := v.Verify(context.Background(), strings.NewReader(signed))
			if err != nil || len(results) != 1 || results[0].Value != dkim.Pass || results[0].Domain != "example.com" || results[0].Selector != "sel" {
				t.Errorf("postkit dkim: %+v %v", results, err)
			}

			tampered := strings.Replace(signed, "Hello Bob", "Hello Eve", 1)
			results, _ = v.Verify(context.Background(), strings.NewReader(tampered))
			if len(results) != 1 || results[0].Value != dkim.Fail {
				t.Errorf("tampered body: %+v", results)
			}
			dkimpy.Verify(t, map[string]string{"sel._domainkey.example.com": od.record},
				dkimpy.Case{Msg: signed, Want: true}, dkimpy.Case{Msg: tampered, Want: false})
		})
	}
}

// TestOpenDKIMVerifies runs opendkim as a verifying milter on messages
// postkit's dkim package signed (RSA and Ed25519): it adds an
// Authentication-Results header with dkim=pass, and dkim=fail once the
// message is changed.
func TestOpenDKIMVerifies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rsaKey := filepath.Join(dir, "rsa.pem")
	if out, err := exec.Command(lookTool(t, "opendkim-genkey"), "-b", "2048", "-d", "example.net", "-s", "pk", "-D", dir).CombinedOutput(); err != nil {
		t.Fatalf("opendkim-genkey: %v\n%s", err, out)
	}
	os.Rename(filepath.Join(dir, "pk.private"), rsaKey)
	rsaSigner, err := dkim.LoadKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaRec, _ := dkim.PublicRecord(rsaSigner)
	edRec, _ := dkim.PublicRecord(edPriv)
	od := startOpenDKIM(t, "relaxed/relaxed", map[string]string{
		"pk._domainkey.example.net": rsaRec,
		"ed._domainkey.example.net": edRec,
	})
	keys := map[string]dkim.Key{
		"rsa": {Domain: "example.net", Selector: "pk", Signer: rsaSigner},
		"ed":  {Domain: "example.net", Selector: "ed", Signer: edPriv},
	}
	for name, key := range keys {
		t.Run(name, func(t *testing.T) {
			s, err := dkim.NewSigner(func(ctx context.Context, addr, domain string) (*dkim.Key, error) { return &key, nil }, nil)
			if err != nil {
				t.Fatal(err)
			}
			msg := strings.ReplaceAll(signMsg, "example.com", "example.net")
			sig, err := s.Sign(context.Background(), "a@example.net", strings.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				msg, want string
			}{
				{sig + msg, "dkim=pass"},
				{sig + strings.Replace(msg, "Subject: a signed", "Subject: a changed", 1), "dkim=fail"},
			} {
				env := milter.Envelope{ClientName: "mail.example.net", ClientAddr: "192.0.2.7", ClientPort: 5555, Helo: "mail.example.net",
					Sender: "a@example.net", Recipients: []string{"b@example.org"}, QueueID: "4ABD"}
				res, out := run(t, testConfig(od.addr), env, tc.msg)
				if res.Reject != nil {
					t.Fatalf("reject %v", res.Reject)
				}
				ar := ""
				for _, m := range res.Mods {
					if strings.EqualFold(m.Name, "Authentication-Results") {
						ar = m.Value
					}
				}
				if !strings.Contains(ar, tc.want) || !strings.Contains(ar, "header.d=example.net") {
					t.Errorf("opendkim said %q, want %s\n%s", ar, tc.want, out)
				}
				// postkit's verifier agrees with opendkim.
				v := &dkim.Verifier{AuthServID: "postkit.test", LookupTXT: func(ctx context.Context, name string) ([]string, error) {
					return []string{map[string]string{"pk._domainkey.example.net": rsaRec, "ed._domainkey.example.net": edRec}[name]}, nil
				}}
				rs, err := v.Verify(context.Background(), strings.NewReader(tc.msg))
				if err != nil || len(rs) != 1 || "dkim="+rs[0].Value != tc.want {
					t.Errorf("postkit says %+v %v, opendkim %s", rs, err, tc.want)
				}
			}
		})
	}
}
