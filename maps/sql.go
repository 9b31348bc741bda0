package maps

import (
	"context"
	"errors"
)

// Placeholder: replaced by the real implementation.
func openPgSQL(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
func openMySQL(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
func openSQLite(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
