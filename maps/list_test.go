package maps

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// listTemp is an error that says it is temporary, as a SQL driver's
// might.
type listTemp struct{}

func (listTemp) Error() string   { return "connection refused" }
func (listTemp) Temporary() bool { return true }

func TestListSearchOrder(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		tables    func(asked *[]string) List
		addr      string
		s         AddressStrategy
		wantValue string
		wantIndex int
		wantAsked string
	}{
		{
			// §2.2: user@domain in the second table beats @domain in the first.
			name: "key-major order",
			tables: func(a *[]string) List {
				return List{
					keyTable{name: "a", data: StaticMap{"@example.com": "catchall"}, asked: a},
					keyTable{name: "b", data: StaticMap{"joe@example.com": "joe-b"}, asked: a},
				}
			},
			addr: "joe@example.com", s: MappingStrategy("+", nil),
			wantValue: "joe-b", wantIndex: 1,
			wantAsked: "a:joe@example.com b:joe@example.com",
		},
		{
			name: "pattern tables see only the full key",
			tables: func(a *[]string) List {
				return List{
					keyTable{name: "re", kind: Pattern, data: StaticMap{"@example.com": "never"}, asked: a},
					keyTable{name: "h", data: StaticMap{"@example.com": "fixed"}, asked: a},
				}
			},
			addr: "joe+x@example.com", s: MappingStrategy("+", nil),
			wantValue: "fixed", wantIndex: 1,
			wantAsked: "re:joe+x@example.com h:joe+x@example.com h:joe@example.com h:@example.com",
		},
		{
			name: "client: hostname hit skips the IP search",
			tables: func(a *[]string) List {
				return List{keyTable{name: "h", data: StaticMap{"example.com": "DUNNO", "192.0.2": "REJECT"}, asked: a}}
			},
			addr:      "client",
			wantValue: "DUNNO", wantIndex: 0,
			wantAsked: "h:mx.example.com h:example.com",
		},
	}
	for _, tt := range tests {
		var asked []string
		l := tt.tables(&asked)
		var (
			r   Result
			ok  bool
			err error
		)
		if tt.addr == "client" {
			r, ok, err = l.FindClient(ctx, "mx.example.com", "192.0.2.1", true)
		} else {
			r, ok, err = l.FindAddress(ctx, tt.addr, tt.s)
		}
		if err != nil || !ok {
			t.Errorf("%s: ok=%v err=%v", tt.name, ok, err)
			continue
		}
		if r.Value != tt.wantValue || r.Index != tt.wantIndex {
			t.Errorf("%s: got %q from table %d, want %q from %d", tt.name, r.Value, r.Index, tt.wantValue, tt.wantIndex)
		}
		if got := strings.Join(asked, " "); got != tt.wantAsked {
			t.Errorf("%s: asked\n got: %s\nwant: %s", tt.name, got, tt.wantAsked)
		}
	}
}

func TestListClientIPSearch(t *testing.T) {
	var asked []string
	l := List{
		keyTable{name: "cidr", kind: Pattern, data: StaticMap{}, asked: &asked},
		keyTable{name: "h", data: StaticMap{"192.0": "OK"}, asked: &asked},
	}
	r, ok, err := l.FindClient(context.Background(), "unknown", "192.0.2.1", true)
	if err != nil || !ok || r.Value != "OK" || r.Key.Step != StepAddrPrefix {
		t.Fatalf("FindClient = %+v, %v, %v", r, ok, err)
	}
	want := "cidr:unknown h:unknown cidr:192.0.2.1 h:192.0.2.1 h:192.0.2 h:192.0"
	if got := strings.Join(asked, " "); got != want {
		t.Errorf("asked\n got: %s\nwant: %s", got, want)
	}
}

func TestListErrors(t *testing.T) {
	ctx := context.Background()
	var asked []string
	tempErr := &Error{Map: "pgsql:/x", Temporary: true, Err: errors.New("server down")}
	l := List{
		keyTable{name: "a", data: StaticMap{}, asked: &asked},
		keyTable{name: "db", err: tempErr, asked: &asked},
		keyTable{name: "c", data: StaticMap{"joe@x": "found"}, asked: &asked},
	}
	_, ok, err := l.FindAddress(ctx, "joe@x", MappingStrategy("", nil))
	if ok || err != tempErr || !IsTemporary(err) {
		t.Errorf("error not returned as is: %v %v", ok, err)
	}
	if got := strings.Join(asked, " "); got != "a:joe@x db:joe@x" {
		t.Errorf("search went on after the error: %s", got)
	}

	// A plain error is wrapped with the table name; Temporary() is kept.
	asked = nil
	l = List{keyTable{name: "sock", err: listTemp{}, asked: &asked}}
	_, _, err = l.Find(ctx, "k")
	var me *Error
	if !errors.As(err, &me) || me.Map != "sock" || !IsTemporary(err) || !strings.Contains(err.Error(), `lookup "k": connection refused`) {
		t.Errorf("wrapped error = %v", err)
	}
	asked = nil
	l = List{keyTable{name: "bad", err: errors.New("corrupt"), asked: &asked}}
	if _, _, err = l.Find(ctx, "k"); err == nil || IsTemporary(err) {
		t.Errorf("permanent error = %v", err)
	}

	// An empty value is an error, not a match and not a miss.
	asked = nil
	l = List{keyTable{name: "empty", data: StaticMap{"k": ""}, asked: &asked}, keyTable{name: "n", data: StaticMap{"k": "v"}, asked: &asked}}
	_, ok, err = l.Find(ctx, "K")
	if ok || !errors.Is(err, ErrEmptyValue) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty value: ok=%v err=%v", ok, err)
	}

	// An empty key is never looked up.
	asked = nil
	if _, ok, err := l.Find(ctx, ""); ok || err != nil || len(asked) != 0 {
		t.Errorf("empty key was looked up: %v %v %v", ok, err, asked)
	}
}

func TestListFindKeys(t *testing.T) {
	var asked []string
	l := List{keyTable{name: "t", data: StaticMap{"b": "2"}, asked: &asked}}
	r, ok, err := l.FindKeys(context.Background(), []Key{{Text: "a"}, {Text: "b", Partial: true, Step: StepHostParent}, {Text: "c"}})
	if err != nil || !ok || r.Value != "2" || r.Key.Text != "b" || !r.Partial() {
		t.Errorf("FindKeys = %+v %v %v", r, ok, err)
	}
	if strings.Join(asked, " ") != "t:a t:b" {
		t.Errorf("asked %v", asked)
	}
	if _, ok, _ := l.FindKeys(context.Background(), nil); ok {
		t.Error("no keys found something")
	}
}
