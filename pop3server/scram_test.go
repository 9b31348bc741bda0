package pop3server

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
)

// TestAUTHSCRAM logs in with SCRAM-SHA-256 (RFC 5802/7677): the client
// side is written here from the RFC; the server's final message comes as
// a "+ " challenge answered by an empty line (RFC 5034 4).
func TestAUTHSCRAM(t *testing.T) {
	e := startServer(t, nil)
	c := dial(t, e.Addr)
	const nonce = "rOprNGfwEbeRWgbNEkqO"
	clientFirstBare := "n=alice,r=" + nonce
	b64 := base64.StdEncoding.EncodeToString
	got := c.cmd("AUTH SCRAM-SHA-256 %s", b64([]byte("n,,"+clientFirstBare)))
	serverFirst, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(got, "+ "))
	if !strings.HasPrefix(got, "+ ") || err != nil {
		t.Fatalf("AUTH SCRAM-SHA-256 = %q", got)
	}
	var salt []byte
	var iter int
	var rnonce string
	for _, f := range strings.Split(string(serverFirst), ",") {
		switch {
		case strings.HasPrefix(f, "r="):
			rnonce = f[2:]
		case strings.HasPrefix(f, "s="):
			salt, _ = base64.StdEncoding.DecodeString(f[2:])
		case strings.HasPrefix(f, "i="):
			iter, _ = strconv.Atoi(f[2:])
		}
	}
	if !strings.HasPrefix(rnonce, nonce) || iter == 0 {
		t.Fatalf("server-first %q", serverFirst)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	salted, err := pbkdf2.Key(sha256.New, "secret", salt, iter, 32)
	if err != nil {
		t.Fatal(err)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	withoutProof := "c=" + b64([]byte("n,,")) + ",r=" + rnonce
	authMsg := clientFirstBare + "," + string(serverFirst) + "," + withoutProof
	sig := mac(stored[:], authMsg)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	got = c.cmd("%s", b64([]byte(withoutProof+",p="+b64(proof))))
	serverKey := mac(salted, "Server Key")
	if want := "+ " + b64([]byte("v="+b64(mac(serverKey, authMsg)))); got != want {
		t.Fatalf("server-final = %q, want %q", got, want)
	}
	if got := c.cmd(""); got != "+OK Logged in." {
		t.Fatalf("after server-final = %q", got)
	}
	if !strings.Contains(e.Log.String(), "method=SCRAM-SHA-256") {
		t.Errorf("login not logged with SCRAM-SHA-256:\n%s", e.Log.String())
	}
}
