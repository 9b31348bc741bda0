package smtpserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/restrictions"
)

// TLSPolicy is how a listener uses TLS, beside the *tls.Config.
type TLSPolicy struct {
	// Level is smtpd_tls_security_level: "none", "may" or "encrypt"
	// (after the role's override and the legacy smtpd_use_tls /
	// smtpd_enforce_tls).
	Level string
	// WrapperMode is implicit TLS (smtpd_tls_wrappermode; the
	// submissions role): the handshake comes before the banner.
	WrapperMode bool
	// AuthOnly is smtpd_tls_auth_only: AUTH only after STARTTLS.
	AuthOnly bool
	// AskCert and RequireCert are smtpd_tls_ask_ccert and
	// smtpd_tls_req_ccert (the latter only with Level "encrypt").
	AskCert, RequireCert bool
	// FingerprintDigest is smtpd_tls_fingerprint_digest.
	FingerprintDigest string
	// Warning says why TLS was turned off at level "may" (Postfix's smtpd
	// goes on without STARTTLS when it has no certificate).
	Warning string

	clientCAs *x509.CertPool
}

// TLSInfo describes a finished handshake for the restrictions:
// restrictions.TLSInfoFrom, with PeerCertVerified decided against
// smtpd_tls_CAfile/CApath. The handshake itself only requests client
// certificates (tls.RequestClientCert), so that an untrusted certificate
// whose fingerprint is in relay_clientcerts still works, as with Postfix;
// this is where the chain is verified.
func (p *TLSPolicy) TLSInfo(cs *tls.ConnectionState) (*restrictions.TLSInfo, error) {
	info, err := restrictions.TLSInfoFrom(cs, p.FingerprintDigest)
	if err != nil || info == nil {
		return info, err
	}
	info.PeerCertVerified = p.verifyPeer(cs)
	return info, nil
}

// verifyPeer reports whether the client's certificate chains to a trusted
// CA. Client certificates are checked for client use only when they say
// what they are for (ExtKeyUsage); Postfix does not insist.
func (p *TLSPolicy) verifyPeer(cs *tls.ConnectionState) bool {
	if len(cs.VerifiedChains) > 0 {
		return true
	}
	if p.clientCAs == nil || len(cs.PeerCertificates) == 0 {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: p.clientCAs, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err == nil
}

// TLSConfigFrom builds the server's TLS configuration from main.cf's
// smtpd_tls_* parameters for a listener in role. It returns a nil
// *tls.Config when TLS is off (level "none", or "may" without a
// certificate: see TLSPolicy.Warning). Errors name the parameter.
//
// The role applies the overrides of Debian's master.cf: submission forces
// level "encrypt", submissions forces wrapper mode, LMTP has no TLS.
//
// Mapping to crypto/tls, where OpenSSL and Go differ:
//   - smtpd_tls_protocols (level may) or smtpd_tls_mandatory_protocols
//     (encrypt) become MinVersion/MaxVersion: the lowest and highest
//     version the list allows. Go cannot leave a hole in the middle, nor
//     speak SSLv2/SSLv3.
//   - smtpd_tls_ciphers/_mandatory_ciphers grades (export, low, medium,
//     high) all map to Go's secure TLS 1.2 suites (Go has no export, low
//     or RC4 suites; every suite it offers is "high" in OpenSSL terms);
//     "null" is refused. smtpd_tls_exclude_ciphers and
//     smtpd_tls_mandatory_exclude_ciphers remove TLS 1.2 suites by Go name
//     or by OpenSSL tag (AES128, AES256, AESGCM, CHACHA20, SHA1, SHA256,
//     SHA384, CBC, ECDHE, kRSA, ECDSA, aRSA, 3DES); unknown tags are
//     ignored as OpenSSL ignores them. TLS 1.3 suites are not
//     configurable in Go.
//   - smtpd_tls_ask_ccert requests a client certificate without making
//     the handshake depend on it; TLSPolicy.TLSInfo verifies it against
//     smtpd_tls_CAfile/CApath. smtpd_tls_req_ccert at level encrypt makes
//     a trusted certificate a condition of the handshake.
func TLSConfigFrom(c *config.Config, role Role) (*tls.Config, TLSPolicy, error) {
	var pol TLSPolicy
	var err error
	fail := func(param string, err error) (*tls.Config, TLSPolicy, error) {
		return nil, TLSPolicy{}, fmt.Errorf("smtpserver: %s: %w", param, err)
	}
	pol.Level = strings.ToLower(strings.TrimSpace(c.Get("smtpd_tls_security_level")))
	if pol.Level == "" {
		enforce, err := c.Bool("smtpd_enforce_tls")
		if err != nil {
			return fail("smtpd_enforce_tls", err)
		}
		use, err := c.Bool("smtpd_use_tls")
		if err != nil {
			return fail("smtpd_use_tls", err)
		}
		switch {
		case enforce:
			pol.Level = "encrypt"
		case use:
			pol.Level = "may"
		default:
			pol.Level = "none"
		}
	}
	switch pol.Level {
	case "none", "may", "encrypt":
	default:
		return fail("smtpd_tls_security_level", fmt.Errorf("%q: want none, may or encrypt", pol.Level))
	}
	if pol.WrapperMode, err = c.Bool("smtpd_tls_wrappermode"); err != nil {
		return fail("smtpd_tls_wrappermode", err)
	}
	switch role {
	case RoleSubmission:
		pol.Level = "encrypt"
	case RoleSubmissions:
		pol.WrapperMode = true
	case RoleLMTP:
		pol.Level, pol.WrapperMode = "none", false
	}
	if pol.WrapperMode && pol.Level == "none" {
		pol.Level = "encrypt"
	}
	if pol.AuthOnly, err = c.Bool("smtpd_tls_auth_only"); err != nil {
		return fail("smtpd_tls_auth_only", err)
	}
	if pol.AskCert, err = c.Bool("smtpd_tls_ask_ccert"); err != nil {
		return fail("smtpd_tls_ask_ccert", err)
	}
	if pol.RequireCert, err = c.Bool("smtpd_tls_req_ccert"); err != nil {
		return fail("smtpd_tls_req_ccert", err)
	}
	pol.RequireCert = pol.RequireCert && pol.Level == "encrypt"
	pol.FingerprintDigest = strings.ToLower(strings.TrimSpace(c.Get("smtpd_tls_fingerprint_digest")))
	switch pol.FingerprintDigest {
	case "md5", "sha1", "sha256", "sha512":
	default:
		return fail("smtpd_tls_fingerprint_digest", fmt.Errorf("%q: want md5, sha1, sha256 or sha512", pol.FingerprintDigest))
	}
	if pol.Level == "none" {
		return nil, pol, nil
	}

	certs, param, err := loadServerCerts(c)
	if err != nil {
		return fail(param, err)
	}
	if len(certs) == 0 {
		if pol.Level == "may" {
			pol.Warning = "no server certificate (smtpd_tls_cert_file, smtpd_tls_chain_files): TLS won't be enabled"
			pol.Level = "none"
			return nil, pol, nil
		}
		return fail("smtpd_tls_cert_file", errors.New("TLS is required (level encrypt or wrapper mode) but no certificate is configured"))
	}
	cfg := &tls.Config{Certificates: certs}

	protoParam, cipherParam, excludeParam := "smtpd_tls_protocols", "smtpd_tls_ciphers", "smtpd_tls_exclude_ciphers"
	if pol.Level == "encrypt" {
		protoParam, cipherParam, excludeParam = "smtpd_tls_mandatory_protocols", "smtpd_tls_mandatory_ciphers", "smtpd_tls_mandatory_exclude_ciphers"
	}
	if cfg.MinVersion, cfg.MaxVersion, err = parseTLSProtocols(c.Get(protoParam)); err != nil {
		return fail(protoParam, err)
	}
	exclude := config.SplitList(c.Get(excludeParam))
	if pol.Level == "encrypt" {
		// The mandatory exclusions add to the general ones (postconf(5)).
		exclude = append(config.SplitList(c.Get("smtpd_tls_exclude_ciphers")), exclude...)
	}
	if cfg.CipherSuites, err = cipherSuites(c.Get(cipherParam), exclude); err != nil {
		return fail(cipherParam, err)
	}

	// The CAs of smtpd_tls_CAfile (not those of CApath) are named in the
	// certificate request, as Postfix does (postconf(5)
	// smtpd_tls_CAfile); clients such as Go's then withhold a
	// certificate of another issuer. Use smtpd_tls_CApath for CAs that
	// must not be named.
	var namedCAs *x509.CertPool
	if caFile := strings.TrimSpace(c.Get("smtpd_tls_CAfile")); caFile != "" {
		if pol.clientCAs, err = loadCAFile(pol.clientCAs, caFile); err != nil {
			return fail("smtpd_tls_CAfile", err)
		}
		if namedCAs, err = loadCAFile(nil, caFile); err != nil {
			return fail("smtpd_tls_CAfile", err)
		}
	}
	if caPath := strings.TrimSpace(c.Get("smtpd_tls_CApath")); caPath != "" {
		if pol.clientCAs, err = loadCAPath(pol.clientCAs, caPath); err != nil {
			return fail("smtpd_tls_CApath", err)
		}
	}
	switch {
	case pol.RequireCert:
		if pol.clientCAs == nil {
			return fail("smtpd_tls_req_ccert", errors.New("requires smtpd_tls_CAfile or smtpd_tls_CApath"))
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = pol.clientCAs
	case pol.AskCert:
		// RequestClientCert: crypto/tls only names the CAs, the policy
		// verifies (TLSPolicy.TLSInfo), so that a certificate known only
		// by its fingerprint (relay_clientcerts) is accepted too.
		cfg.ClientAuth = tls.RequestClientCert
		cfg.ClientCAs = namedCAs
	}
	return cfg, pol, nil
}

// loadServerCerts reads smtpd_tls_chain_files, or else the RSA
// (smtpd_tls_cert_file/key_file) and ECDSA (smtpd_tls_eccert_file/
// eckey_file) pairs. It returns the parameter to blame on error.
func loadServerCerts(c *config.Config) ([]tls.Certificate, string, error) {
	if files := config.SplitList(c.Get("smtpd_tls_chain_files")); len(files) > 0 {
		// Each file holds a key followed by its certificate chain; a
		// key may also follow its chain. Several keys (RSA and ECDSA)
		// may share one file or be in separate files.
		var certs []tls.Certificate
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, "smtpd_tls_chain_files", err
			}
			cs, err := chainFileCerts(data)
			if err != nil {
				return nil, "smtpd_tls_chain_files", fmt.Errorf("%s: %w", f, err)
			}
			certs = append(certs, cs...)
		}
		return certs, "", nil
	}
	var certs []tls.Certificate
	for _, p := range [][2]string{{"smtpd_tls_cert_file", "smtpd_tls_key_file"}, {"smtpd_tls_eccert_file", "smtpd_tls_eckey_file"}} {
		certFile := strings.TrimSpace(c.Get(p[0]))
		if certFile == "" {
			continue
		}
		keyFile := strings.TrimSpace(c.Get(p[1]))
		if keyFile == "" {
			keyFile = certFile
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, p[0], fmt.Errorf("load %s and %s: %w", certFile, keyFile, err)
		}
		certs = append(certs, cert)
	}
	return certs, "", nil
}

// chainFileCerts splits a chain file into (key, chain) groups: postconf(5)
// smtpd_tls_chain_files wants each private key directly followed by its
// certificate chain, leaf first.
func chainFileCerts(data []byte) ([]tls.Certificate, error) {
	type group struct{ key, certs []byte }
	var groups []group
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		enc := pem.EncodeToMemory(b)
		switch {
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			groups = append(groups, group{key: enc})
		case b.Type == "CERTIFICATE":
			if len(groups) == 0 {
				return nil, errors.New("a certificate comes before its private key")
			}
			g := &groups[len(groups)-1]
			g.certs = append(g.certs, enc...)
		}
	}
	if len(groups) == 0 {
		return nil, errors.New("no private key")
	}
	var certs []tls.Certificate
	for i, g := range groups {
		cert, err := tls.X509KeyPair(g.certs, g.key)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

var tlsVersions = []struct {
	name string
	v    uint16 // 0 for versions Go cannot speak
}{
	{"SSLv2", 0}, {"SSLv3", 0}, {"TLSv1", tls.VersionTLS10}, {"TLSv1.1", tls.VersionTLS11},
	{"TLSv1.2", tls.VersionTLS12}, {"TLSv1.3", tls.VersionTLS13},
}

func tlsVersionIndex(name string) int {
	for i, v := range tlsVersions {
		if strings.EqualFold(v.name, name) {
			return i
		}
	}
	return -1
}

// parseTLSProtocols reads a Postfix protocol list: ">=TLSv1.2",
// "<=TLSv1.3", "!SSLv2, !SSLv3", or names to include ("TLSv1.2 TLSv1.3").
// Separators are commas, spaces and colons (postconf(5)
// smtpd_tls_protocols).
func parseTLSProtocols(s string) (minV, maxV uint16, err error) {
	allowed := make([]bool, len(tlsVersions))
	for i := range allowed {
		allowed[i] = true
	}
	included := false
	var incl []bool
	for _, tok := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == ':' || r == '\t' }) {
		op := ""
		for _, p := range []string{">=", "<=", "!"} {
			if strings.HasPrefix(tok, p) {
				op, tok = p, tok[len(p):]
				break
			}
		}
		i := tlsVersionIndex(tok)
		if i < 0 {
			return 0, 0, fmt.Errorf("unknown protocol %q", tok)
		}
		switch op {
		case ">=":
			for j := 0; j < i; j++ {
				allowed[j] = false
			}
		case "<=":
			for j := i + 1; j < len(allowed); j++ {
				allowed[j] = false
			}
		case "!":
			allowed[i] = false
		default:
			if !included {
				incl = make([]bool, len(tlsVersions))
				included = true
			}
			incl[i] = true
		}
	}
	lo, hi := -1, -1
	for i, v := range tlsVersions {
		if !allowed[i] || (included && !incl[i]) || v.v == 0 {
			continue
		}
		if lo < 0 {
			lo = i
		}
		hi = i
	}
	if lo < 0 {
		return 0, 0, fmt.Errorf("%q leaves no protocol Go can speak", s)
	}
	return tlsVersions[lo].v, tlsVersions[hi].v, nil
}

// cipherSuites maps a cipher grade and exclusions to TLS 1.2 suites; nil
// means Go's default list.
func cipherSuites(grade string, exclude []string) ([]uint16, error) {
	switch strings.ToLower(strings.TrimSpace(grade)) {
	case "export", "low", "medium", "high":
	case "null":
		return nil, errors.New("null ciphers are not supported")
	default:
		return nil, fmt.Errorf("%q: want export, low, medium, high or null", grade)
	}
	if len(exclude) == 0 {
		return nil, nil
	}
	var out []uint16
	for _, cs := range tls.CipherSuites() {
		if !slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			continue // a TLS 1.3 suite
		}
		tags := suiteTags(cs.Name)
		drop := false
		for _, x := range exclude {
			x = strings.TrimPrefix(x, "!")
			if strings.EqualFold(x, cs.Name) || tags[strings.ToUpper(x)] {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, cs.ID)
		}
	}
	if len(out) == 0 {
		// Only TLS 1.3 (whose suites Go does not let us choose) is
		// left: say so rather than silently allowing every suite.
		return nil, errors.New("the exclusions leave no TLS 1.2 cipher suite")
	}
	return out, nil
}

// suiteTags returns OpenSSL-style tags for a Go suite name such as
// TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256.
func suiteTags(name string) map[string]bool {
	t := map[string]bool{}
	kx, enc, _ := strings.Cut(strings.TrimPrefix(name, "TLS_"), "_WITH_")
	switch kx {
	case "RSA":
		t["KRSA"], t["ARSA"], t["RSA"] = true, true, true
	case "ECDHE_RSA":
		t["ECDHE"], t["EECDH"], t["KECDHE"], t["ARSA"], t["RSA"] = true, true, true, true, true
	case "ECDHE_ECDSA":
		t["ECDHE"], t["EECDH"], t["KECDHE"], t["ECDSA"], t["AECDSA"] = true, true, true, true, true
	}
	switch {
	case strings.HasPrefix(enc, "AES_128"):
		t["AES128"], t["AES"] = true, true
	case strings.HasPrefix(enc, "AES_256"):
		t["AES256"], t["AES"] = true, true
	case strings.HasPrefix(enc, "CHACHA20"):
		t["CHACHA20"] = true
	case strings.HasPrefix(enc, "3DES"):
		t["3DES"] = true
	case strings.HasPrefix(enc, "RC4"):
		t["RC4"] = true
	}
	switch {
	case strings.Contains(enc, "_GCM"):
		t["AESGCM"] = true
	case strings.Contains(enc, "_CBC"):
		t["CBC"] = true
	}
	switch {
	case strings.HasSuffix(enc, "_SHA"):
		t["SHA1"], t["SHA"] = true, true
	case strings.HasSuffix(enc, "_SHA256"):
		t["SHA256"] = true
	case strings.HasSuffix(enc, "_SHA384"):
		t["SHA384"] = true
	}
	return t
}

func loadCAFile(pool *x509.CertPool, file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// loadCAPath reads every PEM certificate in dir (c_rehash's hashed links
// and any other file); files without certificates are skipped.
func loadCAPath(pool *x509.CertPool, dir string) (*x509.CertPool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if pool == nil {
		pool = x509.NewCertPool()
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		pool.AppendCertsFromPEM(data)
	}
	return pool, nil
}

// SelfSigned generates a self-signed ECDSA P-256 certificate for the
// given host names (and IP addresses), valid for a year, usable for
// servers and clients: for examples and tests, never for production.
func SelfSigned(hostnames ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("smtpserver: self-signed certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("smtpserver: self-signed certificate: %w", err)
	}
	cn := "localhost"
	if len(hostnames) > 0 {
		cn = hostnames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hostnames {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("smtpserver: self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("smtpserver: self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// WriteCertificatePEM writes cert's chain to certFile and its private key
// to keyFile (mode 0600), in the PEM form smtpd_tls_cert_file and
// smtpd_tls_key_file, swaks and openssl read. One file name for both
// writes the key first, then the chain, as smtpd_tls_chain_files wants.
func WriteCertificatePEM(cert tls.Certificate, certFile, keyFile string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("smtpserver: write %s: %w", keyFile, err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	var certPEM []byte
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if certFile == keyFile {
		if err := os.WriteFile(keyFile, append(keyPEM, certPEM...), 0o600); err != nil {
			return fmt.Errorf("smtpserver: %w", err)
		}
		return nil
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("smtpserver: %w", err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("smtpserver: %w", err)
	}
	return nil
}
