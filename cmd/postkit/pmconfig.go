package main

// postmap, postalias and newaliases read main.cf through package config,
// as Postfix's commands read it: they need default_database_type,
// alias_database and the parameters those refer to.

import (
	"errors"
	"fmt"

	"github.com/postkit-mail/postkit/config"
)

// pmLoadConfig reads DIR/main.cf and passes its warnings ("overriding
// earlier entry") to warn, as Postfix's commands print them when they
// start. A missing file or a line without '=' is an error; pmConfigError
// words it.
func pmLoadConfig(dir string, warn func(string)) (*config.Config, error) {
	c, err := config.Load(dir)
	if err != nil {
		return nil, err
	}
	for _, w := range c.Warnings() {
		warn(w.String())
	}
	return c, nil
}

// pmConfigError is Postfix's fatal message for a main.cf it cannot read:
// "open DIR/main.cf: No such file or directory", or "DIR/main.cf, line 2:
// missing '=' after attribute name: ...". Postfix joins DIR and main.cf
// with a '/' even after a trailing slash; so does config.Load.
func pmConfigError(dir string, err error) string {
	var se *config.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s, line %d: %s", se.File, se.Line, se.Msg)
	}
	return fmt.Sprintf("open %s/main.cf: %s", dir, pmStrerror(err))
}
