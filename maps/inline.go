package maps

import (
	"context"
	"errors"
)

// Placeholder: replaced by the real implementation.
func openInline(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
func openStatic(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
func openFail(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
func openUnion(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
func openPipe(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
func openUnix(ctx context.Context, name string, opts Options) (Map, error) {
	return nil, errors.New("maps: not implemented yet")
}
