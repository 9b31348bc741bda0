package dkim_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/postkit-mail/postkit/dkim"
	"github.com/postkit-mail/postkit/internal/dkimpy"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/resolver/dnstest"
)

func lines(s ...string) string { return strings.Join(s, "\r\n") + "\r\n" }

var testMsg = lines(
	"Received: from client (client [192.0.2.1]) by mx.example.com",
	"From: Alice <alice@example.com>",
	"To: Bob <bob@example.org>,",
	"\tCarol <carol@example.org>",
	"Subject:   Hello   there ",
	"Date: Sat, 28 Nov 2026 04:00:00 +0000",
	"Message-ID: <1@example.com>",
	"X-Not-Signed: 1",
	"",
	"Hi Bob,  ",
	"",
	"\tbody with trailing blank lines",
	"",
	"",
)

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
	edKey   ed25519.PrivateKey
)

// testKeys returns one RSA 2048 and one Ed25519 key for the whole run.
func testKeys(t testing.TB) (*rsa.PrivateKey, ed25519.PrivateKey) {
	keyOnce.Do(func() {
		var err error
		rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		_, edKey, _ = ed25519.GenerateKey(rand.Reader)
	})
	return rsaKey, edKey
}

func fixedKey(k *dkim.Key) dkim.KeyFunc {
	return func(ctx context.Context, addr, domain string) (*dkim.Key, error) { return k, nil }
}

func sign(t testing.TB, key crypto.Signer, selector string, opts *dkim.Options, msg string) string {
	t.Helper()
	s, err := dkim.NewSigner(fixedKey(&dkim.Key{Domain: "example.com", Selector: selector, Signer: key}), opts)
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.Sign(context.Background(), "alice@example.com", strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "DKIM-Signature: ") || !strings.HasSuffix(h, "\r\n") {
		t.Fatalf("signature field %q", h)
	}
	return h + msg
}

// zoneTXT writes a TXT record in zone syntax, split into strings of at most
// 255 bytes.
func zoneTXT(name, rec string) string {
	var parts []string
	for len(rec) > 200 {
		parts = append(parts, `"`+rec[:200]+`"`)
		rec = rec[200:]
	}
	parts = append(parts, `"`+rec+`"`)
	return name + " TXT " + strings.Join(parts, " ") + "\n"
}

// TestSignVerify signs with postkit and verifies with go-msgauth directly,
// postkit's Verifier over real DNS (dnstest) and the Python dkim library.
func TestSignVerify(t *testing.T) {
	t.Parallel()
	rk, ek := testKeys(t)
	rsaRec, _ := dkim.PublicRecord(rk)
	edRec, _ := dkim.PublicRecord(ek)
	srv := dnstest.New(t, zoneTXT("rsa._domainkey.example.com.", rsaRec)+zoneTXT("ed._domainkey.example.com.", edRec))
	res := srv.Resolver()
	records := map[string]string{"rsa._domainkey.example.com": rsaRec, "ed._domainkey.example.com": edRec}
	lookup := func(name string) ([]string, error) {
		if r, ok := records[strings.TrimSuffix(name, ".")]; ok {
			return []string{r}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	tests := []struct {
		key      crypto.Signer
		selector string
		opts     *dkim.Options
		name     string
	}{
		{rk, "rsa", nil, "defaults"},
		{rk, "rsa", &dkim.Options{HeaderCanonicalization: "simple", BodyCanonicalization: "simple"}, "simple-simple"},
		{rk, "rsa", &dkim.Options{HeaderCanonicalization: "relaxed", BodyCanonicalization: "simple", Expiration: time.Hour}, "relaxed-simple-x"},
		{rk, "rsa", &dkim.Options{Headers: []string{"Subject", "X-Not-Signed"}, Oversign: []string{}}, "own-headers"},
		// dkimpy needs python3-nacl for Ed25519.
		{ek, "ed", nil, "defaults"},
		{ek, "ed", &dkim.Options{HeaderCanonicalization: "simple", BodyCanonicalization: "relaxed"}, "simple-relaxed"},
	}
	for _, tc := range tests {
		t.Run(tc.selector+"/"+tc.name, func(t *testing.T) {
			signed := sign(t, tc.key, tc.selector, tc.opts, testMsg)
			// go-msgauth on its own.
			vs, err := msgdkim.VerifyWithOptions(strings.NewReader(signed), &msgdkim.VerifyOptions{LookupTXT: lookup})
			if err != nil || len(vs) != 1 || vs[0].Err != nil {
				t.Fatalf("go-msgauth: %v %+v", err, vs)
			}
			// postkit's Verifier, keys from DNS.
			v := &dkim.Verifier{AuthServID: "mx.postkit.test", LookupTXT: res.LookupTXT}
			ar, err := v.AuthenticationResults(context.Background(), strings.NewReader(signed))
			b := regexp.MustCompile(`b=([A-Za-z0-9+/]{8})`).FindStringSubmatch(signed[strings.Index(signed, " b=")-1:])
			algo := map[string]string{"rsa": "rsa-sha256", "ed": "ed25519-sha256"}[tc.selector]
			want := "mx.postkit.test;\r\n\tdkim=pass header.d=example.com header.a=" + algo + " header.s=" + tc.selector + " header.b=" + quoteB(b[1])
			if err != nil || ar != want {
				t.Errorf("Authentication-Results\n got %q\nwant %q (%v)", ar, want, err)
			}
			py := []dkimpy.Case{{Msg: signed, Want: true}}
			// Tampering: body, a signed header, an added From.
			for _, bad := range []string{
				strings.Replace(signed, "Hi Bob", "Hi Eve", 1),
				strings.Replace(signed, "Hello", "Jello", 1),
				strings.Replace(signed, "\r\nFrom:", "\r\nFrom: Mallory <m@example.com>\r\nFrom:", 1),
			} {
				if tc.opts != nil && tc.opts.Headers != nil && !strings.Contains(bad, "Hi Eve") {
					continue // From is signed but not oversigned; Subject case below
				}
				rs, err := v.Verify(context.Background(), strings.NewReader(bad))
				if err != nil || len(rs) != 1 || rs[0].Value != dkim.Fail {
					t.Errorf("tampered: %+v %v", rs, err)
				}
				py = append(py, dkimpy.Case{Msg: bad, Want: false})
			}
			dkimpy.Verify(t, records, py...)
		})
	}
}

func quoteB(b string) string {
	if strings.ContainsAny(b, "/=") {
		return `"` + b + `"`
	}
	return b
}

// TestSignedHeaders: From is oversigned, listed headers are signed as often
// as they occur, unlisted ones not at all.
func TestSignedHeaders(t *testing.T) {
	_, ek := testKeys(t)
	signed := sign(t, ek, "ed", nil, testMsg)
	tags := map[string]string{}
	sig := signed[:strings.Index(signed, "\r\nReceived:")]
	for _, p := range strings.Split(strings.Join(strings.Fields(sig[len("DKIM-Signature:"):]), ""), ";") {
		k, v, _ := strings.Cut(p, "=")
		tags[k] = v
	}
	if tags["h"] != "From:From:Subject:Date:To:Message-ID" {
		t.Errorf("h=%s", tags["h"])
	}
	if tags["c"] != "relaxed/relaxed" || tags["a"] != "ed25519-sha256" || tags["d"] != "example.com" || tags["s"] != "ed" {
		t.Errorf("tags %q", tags)
	}
	// No From: refused.
	s, _ := dkim.NewSigner(fixedKey(&dkim.Key{Domain: "example.com", Selector: "ed", Signer: ek}), nil)
	if _, err := s.Sign(context.Background(), "a@example.com", strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err == nil {
		t.Error("signed a message without From")
	}
	if _, err := dkim.NewSigner(fixedKey(nil), &dkim.Options{BodyCanonicalization: "nowsp"}); err == nil {
		t.Error("accepted canonicalization nowsp")
	}
}

// TestVerifyResults covers every result value, with keys over real DNS.
func TestVerifyResults(t *testing.T) {
	t.Parallel()
	rk, ek := testKeys(t)
	rsaRec, _ := dkim.PublicRecord(rk)
	edRec, _ := dkim.PublicRecord(ek)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	srv := dnstest.New(t, zoneTXT("rsa._domainkey.example.com.", rsaRec)+
		zoneTXT("ed._domainkey.example.com.", edRec)+
		zoneTXT("revoked._domainkey.example.com.", "v=DKIM1; k=rsa; p=")+
		zoneTXT("broken._domainkey.example.com.", "v=DKIM1; k=rsa; p=!!!")+
		zoneTXT("down._domainkey.example.com.", rsaRec))
	srv.ServFail("down._domainkey.example.com")
	v := &dkim.Verifier{AuthServID: "mx.postkit.test", LookupTXT: srv.Resolver(dnstest.NoCache()).LookupTXT}

	_ = small
	good := sign(t, rk, "rsa", nil, testMsg)
	goodEd := sign(t, ek, "ed", nil, testMsg)
	tests := []struct {
		name, msg string
		want      []string
	}{
		{"unsigned", testMsg, nil},
		{"pass", good, []string{"pass"}},
		{"two signatures", good[:strings.Index(good, "Received:")] + goodEd, []string{"pass", "pass"}},
		{"fail body", strings.Replace(good, "Hi Bob", "Hi Eve", 1), []string{"fail"}},
		{"no key", sign(t, rk, "missing", nil, testMsg), []string{"permerror"}},
		{"revoked key", sign(t, rk, "revoked", nil, testMsg), []string{"permerror"}},
		{"broken key", sign(t, rk, "broken", nil, testMsg), []string{"permerror"}},
		{"wrong key", sign(t, ek, "rsa", nil, testMsg), []string{"permerror"}},
		{"dns down", sign(t, rk, "down", nil, testMsg), []string{"temperror"}},
		{"malformed", "DKIM-Signature: v=1; a=rsa-sha256; garbage\r\n" + testMsg, []string{"neutral"}},
		{"one bad one good", sign(t, rk, "missing", nil, good), []string{"permerror", "pass"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := v.Verify(context.Background(), strings.NewReader(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs {
				got = append(got, r.Value)
				if r.Value != dkim.Pass && r.Reason == "" {
					t.Errorf("%s without reason", r.Value)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("results %q, want %q (%+v)", got, tc.want, rs)
			}
			ar, err := v.AuthenticationResults(context.Background(), strings.NewReader(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil && ar != "mx.postkit.test; dkim=none" {
				t.Errorf("unsigned: %q", ar)
			}
			for _, w := range tc.want {
				if !strings.Contains(ar, "dkim="+w+" ") {
					t.Errorf("A-R %q lacks dkim=%s", ar, w)
				}
			}
		})
	}
	// The contract function: authserv-id is the host name.
	ar, err := dkim.Verify(context.Background(), strings.NewReader(good), v.LookupTXT)
	host, _ := os.Hostname()
	if err != nil || !strings.HasPrefix(ar, host+";") || !strings.Contains(ar, "dkim=pass") {
		t.Errorf("Verify = %q, %v", ar, err)
	}
}

// TestOpenDKIMSigned verifies a message signed by OpenDKIM's library
// (opendkim-testmsg). That tool signs with rsa-sha1 and has no option for
// another hash, so the answer must be permerror (RFC 8301 section 3.1:
// verifiers must not accept rsa-sha1); dkimpy, which still accepts
// rsa-sha1, confirms the signature itself is good. Messages opendkim signs with
// rsa-sha256 as a milter are verified in package milter's tests.
func TestOpenDKIMSigned(t *testing.T) {
	t.Parallel()
	testmsg := lookTool(t, "opendkim-testmsg")
	genkey := lookTool(t, "opendkim-genkey")
	dir := t.TempDir()
	if out, err := exec.Command(genkey, "-b", "2048", "-d", "example.com", "-s", "od", "-D", dir).CombinedOutput(); err != nil {
		t.Fatalf("opendkim-genkey: %v\n%s", err, out)
	}
	txt, _ := os.ReadFile(filepath.Join(dir, "od.txt"))
	var rec strings.Builder
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(string(txt), -1) {
		rec.WriteString(m[1])
	}
	srv := dnstest.New(t, zoneTXT("od._domainkey.example.com.", rec.String()))
	v := &dkim.Verifier{AuthServID: "mx", LookupTXT: srv.Resolver().LookupTXT}

	cmd := exec.Command(testmsg, "-C", "-d", "example.com", "-s", "od", "-k", filepath.Join(dir, "od.private"), "-t", dir)
	cmd.Stdin = strings.NewReader(testMsg)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("opendkim-testmsg: %v", err)
	}
	signed := string(out)
	if !strings.HasPrefix(signed, "DKIM-Signature:") {
		t.Fatalf("opendkim-testmsg output:\n%s", signed)
	}
	rs, err := v.Verify(context.Background(), strings.NewReader(signed))
	if err != nil || len(rs) != 1 || rs[0].Value != dkim.PermError || rs[0].Algorithm != "rsa-sha1" ||
		rs[0].Domain != "example.com" || rs[0].Selector != "od" {
		t.Errorf("verify opendkim-testmsg's rsa-sha1 signature: %+v %v, want permerror", rs, err)
	}
	dkimpy.Verify(t, map[string]string{"od._domainkey.example.com": rec.String()},
		dkimpy.Case{Msg: signed, Want: true}, dkimpy.Case{Msg: strings.Replace(signed, "Hi Bob", "Hi Eve", 1), Want: false})
}

// TestMapKeys: keys from a lookup table, as opendkim's KeyTable.
func TestMapKeys(t *testing.T) {
	rk, ek := testKeys(t)
	dir := t.TempDir()
	der := x509.MarshalPKCS1PrivateKey(rk)
	os.WriteFile(filepath.Join(dir, "rsa.pem"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600)
	p8, _ := x509.MarshalPKCS8PrivateKey(ek)
	os.WriteFile(filepath.Join(dir, "ed.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600)
	os.WriteFile(filepath.Join(dir, "bad.pem"), []byte("not a key"), 0o600)
	table := mapTable{
		"example.com":      "rsa:" + dir + "/rsa.pem",
		".example.org":     "%:ed:" + dir + "/ed.pem",
		"boss@example.net": "example.net:ed:" + dir + "/ed.pem",
		"example.net":      "rsa:" + dir + "/missing.pem",
		"bad.example":      "sel:" + dir + "/bad.pem",
		"nosel.example":    dir + "/rsa.pem",
	}
	s, err := dkim.NewMapSigner(table, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sender, d, sel string
		err            bool
	}{
		{"alice@example.com", "example.com", "rsa", false},
		{"alice@EXAMPLE.COM", "example.com", "rsa", false},
		{"bob@sub.example.org", "sub.example.org", "ed", false},
		{"bob@example.org", "", "", false}, // ".example.org" matches subdomains only
		{"boss@example.net", "example.net", "ed", false},
		{"other@example.net", "", "", true},
		{"x@bad.example", "", "", true},
		{"x@nosel.example", "", "", true},
		{"x@unknown.example", "", "", false},
		{"", "example.com", "rsa", false}, // null sender: the From: domain
	}
	for _, tc := range tests {
		h, err := s.Sign(context.Background(), tc.sender, strings.NewReader(testMsg))
		if (err != nil) != tc.err {
			t.Errorf("%s: error %v", tc.sender, err)
			continue
		}
		if tc.d == "" {
			if h != "" {
				t.Errorf("%s: signed without a key: %q", tc.sender, h)
			}
			continue
		}
		flat := strings.Join(strings.Fields(h), "")
		if !strings.Contains(flat, "d="+tc.d+";") || !strings.Contains(flat, "s="+tc.sel+";") {
			t.Errorf("%s: %q, want d=%s s=%s", tc.sender, h, tc.d, tc.sel)
		}
	}
	// A replaced key file is read again.
	os.WriteFile(filepath.Join(dir, "rsa.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600)
	future := time.Now().Add(time.Minute)
	os.Chtimes(filepath.Join(dir, "rsa.pem"), future, future)
	h, err := s.Sign(context.Background(), "alice@example.com", strings.NewReader(testMsg))
	if err != nil || !strings.Contains(h, "a=ed25519-sha256") {
		t.Errorf("after key change: %q %v", h, err)
	}
}

type mapTable map[string]string

func (m mapTable) Lookup(ctx context.Context, key string) (string, bool, error) {
	v, ok := m[key]
	return v, ok, nil
}

func TestParseKey(t *testing.T) {
	_, ek := testKeys(t)
	seed := ek.Seed()
	k, err := dkim.ParseKey([]byte(" " + b64(seed) + "\n"))
	if err != nil || !k.(ed25519.PrivateKey).Equal(ek) {
		t.Errorf("seed: %v", err)
	}
	for _, bad := range []string{"", "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", "AAAA",
		"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"} {
		if _, err := dkim.ParseKey([]byte(bad)); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func b64(b []byte) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var s strings.Builder
	for i := 0; i < len(b); i += 3 {
		var n uint32
		k := min(3, len(b)-i)
		for j := 0; j < 3; j++ {
			n <<= 8
			if j < k {
				n |= uint32(b[i+j])
			}
		}
		for j := 0; j < 4; j++ {
			if j <= k {
				s.WriteByte(enc[(n>>(18-6*j))&63])
			} else {
				s.WriteByte('=')
			}
		}
	}
	return s.String()
}

func lookTool(t *testing.T, name string) string {
	t.Helper()
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	oracle.Unavailable(t, "%s is not installed (Debian package opendkim-tools)", name)
	return ""
}
