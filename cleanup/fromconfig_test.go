package cleanup

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/config"
)

// TestFromConfig: main.cf parameters reach the pipeline.
func TestFromConfig(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "sel.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"keys":        "example.com  sel:" + keyPath + "\n",
		"rewrite_ips": "192.0.2.50  yes\n",
	}
	for n, d := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := strings.ReplaceAll(`compatibility_level = 3.6
myhostname = mx.example.com
mydomain = example.com
myorigin = example.com
hopcount_limit = 5
message_drop_headers = x-secret
enable_original_recipient = no
always_bcc = archive
undisclosed_recipients_header = To: undisclosed-recipients:;
local_header_rewrite_clients = check_address_map texthash:{DIR}/rewrite_ips
postkit_dkim_key_table = texthash:{DIR}/keys
postkit_dkim_signing_clients = check_address_map texthash:{DIR}/rewrite_ips
`, "{DIR}", dir)
	cfg, err := config.Parse("main.cf", strings.NewReader(main))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := ConfigFromMain(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, st, _ := newTest(t, cc)
	in := Input{Sender: "joe", Recipients: []Recipient{{Addr: "r@example.org"}}, Client: ClientInfo{Name: "x", Addr: "192.0.2.50"}}
	env, data, _, err := submit(t, c, st, in, "X-Secret: 1\nBcc: kept@example.org\nSubject: cfg\n\nbody\n")
	if err != nil {
		t.Fatal(err)
	}
	if env.Sender != "joe@example.com" || addrs(env.Recipients) != "r@example.org,archive@example.com" || env.Recipients[0].Original != "r@example.org" {
		t.Errorf("envelope %+v", env)
	}
	for _, w := range []string{"DKIM-Signature: ", "\r\nBcc: kept@example.org\r\n", "\r\nTo: undisclosed-recipients:;\r\n", "\r\nFrom: joe@example.com\r\n"} {
		if !strings.Contains(data, w) {
			t.Errorf("no %q in\n%s", w, data)
		}
	}
	if strings.Contains(data, "X-Secret") {
		t.Errorf("X-Secret kept:\n%s", data)
	}
	// A client not in the table: no header rewriting, no signature.
	in.Client.Addr = "192.0.2.51"
	_, data, _, err = submit(t, c, st, in, "Subject: cfg\n\nbody\n")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(data, "DKIM-Signature") || strings.Contains(data, "From:") {
		t.Errorf("remote mail signed or completed:\n%s", data)
	}
	_, _, _, err = submit(t, c, st, in, strings.Repeat("Received: x\n", 5)+"\nbody\n")
	if err == nil {
		t.Errorf("hopcount_limit = 5 not applied")
	}
	for _, bad := range []string{"header_from_format = fancy\n", "postkit_dkim_verify = maybe\n", "local_header_rewrite_clients = permit_everyone\n"} {
		cfg, err := config.Parse("main.cf", strings.NewReader("compatibility_level = 3.6\n"+bad))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := FromConfig(context.Background(), cfg, st); err == nil {
			t.Errorf("%s: accepted", strings.TrimSpace(bad))
		}
	}
}
