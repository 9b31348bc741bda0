package main

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/postkit-mail/postkit/config"
)

// builtinMainCF is the configuration used without -config; "@DATA@" in
// it stands for the data directory.
//
//go:embed main.cf
var builtinMainCF string

// loadConfig reads the configuration: DIR/main.cf when configDir is set,
// the built-in main.cf otherwise. Either way the queue lives under the
// data directory: queue_directory is set to DATA/queue, since postkit's
// queue format is not Postfix's and must never be pointed at a Postfix
// spool. It also returns master.cf's path when DIR has one ("" otherwise).
func loadConfig(configDir, dataDir string) (*config.Config, string, error) {
	var cfg *config.Config
	var err error
	masterCF := ""
	if configDir == "" {
		text := strings.ReplaceAll(builtinMainCF, "@DATA@", dataDir)
		cfg, err = config.Parse("(built-in main.cf)", strings.NewReader(text))
	} else {
		cfg, err = config.Load(configDir)
		mc := filepath.Join(configDir, "master.cf")
		if _, serr := os.Stat(mc); serr == nil {
			masterCF = mc
		} else if !errors.Is(serr, os.ErrNotExist) {
			return nil, "", serr
		}
		if err == nil {
			// The built-in TLS files, unless main.cf names its own.
			if !cfg.IsSet("smtpd_tls_cert_file") && !cfg.IsSet("smtpd_tls_chain_files") {
				cfg.Set("smtpd_tls_cert_file", filepath.Join(dataDir, "tls", "cert.pem"))
				cfg.Set("smtpd_tls_key_file", filepath.Join(dataDir, "tls", "key.pem"))
			}
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading the configuration: %w", err)
	}
	cfg.Set("queue_directory", filepath.Join(dataDir, "queue"))
	return cfg, masterCF, nil
}
