package maps

import (
	"context"
	"errors"
)

// Placeholder: replaced by the real implementation.
func openCDB(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
