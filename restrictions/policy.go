package restrictions

// STUB owned by the policy helper: replace freely, keeping the names the
// core uses (PolicyConfig, defaultPolicyConfig, policyState,
// newPolicyState, (*policyState).close, policyBuiltins).

import "context"

// PolicyConfig holds the smtpd_policy_service_* defaults.
type PolicyConfig struct{}

func defaultPolicyConfig() PolicyConfig { return PolicyConfig{} }

type policyState struct{}

func newPolicyState(ctx context.Context, c *Checker) (*policyState, error) { return &policyState{}, nil }

func (p *policyState) close() error { return nil }

var policyBuiltins = map[string]*builtin{}

func policyConfigFrom(p *params) PolicyConfig { return defaultPolicyConfig() }
