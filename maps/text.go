package maps

import (
	"context"
	"errors"
)

// Placeholder: replaced by the real implementation.
func openHash(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
func openBtree(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
func openLMDB(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
func openDBM(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
func openTexthash(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
