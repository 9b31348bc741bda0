package maps

import (
	"context"
	"errors"
)

// Placeholder: replaced by the real implementation.
func openRegexp(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
func openPCRE(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
