package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/mda/local"
	"github.com/postkit-mail/postkit/mda/pipe"
	"github.com/postkit-mail/postkit/mda/smtp"
	"github.com/postkit-mail/postkit/mda/virtual"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/route"
)

// defaultServices are the transports of Debian's master.cf that postkit
// has agents for, used when there is no master.cf.
var defaultServices = []mda.Service{
	{Name: "local", Command: "local"}, {Name: "virtual", Command: "virtual"},
	{Name: "smtp", Command: "smtp"}, {Name: "relay", Command: "smtp"}, {Name: "lmtp", Command: "lmtp"},
	{Name: "error", Command: "error"}, {Name: "retry", Command: "error"}, {Name: "discard", Command: "discard"},
}

// buildDelivery makes the router (trivial-rewrite and transport_maps)
// and one delivery agent per master.cf service, behind mda.Dispatcher,
// which defers mail for a transport without an agent.
func (s *server) buildDelivery(ctx context.Context, g *generation, users *auth.PasswdFile, masterCF string) error {
	rt, err := route.FromConfig(ctx, g.cfg, route.Options{Logger: s.ml.logger("trivial-rewrite")})
	if err != nil {
		return err
	}
	g.router = rt
	closers := []func(){func() { rt.Close() }}
	g.close = func() {
		for _, c := range closers {
			c()
		}
	}
	services := defaultServices
	if masterCF != "" {
		if services, err = mda.ReadMasterCF(masterCF); err != nil {
			return err
		}
	}
	agents := map[string]queue.Deliverer{}
	g.commands = map[string]string{}
	for _, svc := range services {
		g.commands[svc.Name] = strings.TrimSpace(svc.Command)
		if svc.Type != "" && svc.Type != "unix" {
			continue // inet services are listeners; the flags choose those
		}
		// The service's -o overrides apply to its own copy of main.cf.
		cfg := g.cfg
		if len(svc.Options) > 0 {
			if cfg, _, err = loadConfig(s.opts.configDir, s.opts.dataDir); err != nil {
				return err
			}
			for k, v := range svc.Options {
				cfg.Set(k, v)
			}
		}
		a, closer, err := s.agent(ctx, svc, cfg, g, users)
		if err != nil {
			return fmt.Errorf("master.cf service %s (%s): %w", svc.Name, svc.Command, err)
		}
		if a != nil {
			agents[svc.Name] = a
		}
		if closer != nil {
			closers = append(closers, closer)
		}
	}
	g.deliver = &mda.Dispatcher{Agents: agents, Logger: s.ml.logger("qmgr")}
	return nil
}

// agent builds the delivery agent of one service; nil for the services
// that are not delivery agents (cleanup, qmgr, ...) and for the agents
// this build does not have.
func (s *server) agent(ctx context.Context, svc mda.Service, cfg *config.Config, g *generation, users *auth.PasswdFile) (queue.Deliverer, func(), error) {
	switch strings.TrimSpace(svc.Command) {
	case "error":
		if svc.Name == "retry" {
			return mda.Retry(), nil, nil
		}
		return mda.Error(), nil, nil
	case "discard":
		return mda.Discard(), nil, nil
	case "local":
		a, err := local.FromConfig(ctx, cfg, local.Options{Users: users, Resubmit: mda.NewCleanupResubmitter(g.cleanup),
			Logger: s.ml.logger("local")})
		if err != nil {
			return nil, nil, err
		}
		return a, func() { a.Close() }, nil
	case "smtp", "lmtp":
		a, err := smtp.FromConfig(ctx, cfg, svc.Name, smtp.Options{LMTP: svc.Command == "lmtp",
			Logger: s.ml.logger(strings.TrimSpace(svc.Command))})
		if err != nil {
			return nil, nil, err
		}
		return a, func() { a.Close() }, nil
	case "pipe":
		a, err := pipe.New(svc, cfg, pipe.Options{Logger: s.ml.logger("pipe")})
		if err != nil {
			// As Postfix's pipe(8) fails only when used (a user= that
			// does not exist...), a bad entry costs only its transport:
			// its mail waits, deferred, until the entry is fixed.
			s.log.Warn(fmt.Sprintf("master.cf service %s: %v; its mail will be deferred", svc.Name, err))
			return nil, nil, nil
		}
		return a, nil, nil
	case "virtual":
		if len(cfg.List("virtual_mailbox_domains")) == 0 {
			return nil, nil, nil // no virtual mailboxes configured (Postfix's default)
		}
		a, err := virtual.FromConfig(ctx, cfg, virtual.Options{Logger: s.ml.logger("virtual")})
		return a, nil, err
	}
	return nil, nil, nil
}
