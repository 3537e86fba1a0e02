package hclogzap

import (
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// observed returns an hclog.Logger named name over an observer that records
// everything at min and above.
func observed(min zapcore.Level, name string, opts ...zap.Option) (hclog.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(min)
	return New(zap.New(core, opts...), name), logs
}

// only returns the single entry logs holds, failing the test otherwise.
func only(t *testing.T, logs *observer.ObservedLogs) observer.LoggedEntry {
	t.Helper()
	all := logs.TakeAll()
	if len(all) != 1 {
		t.Fatalf("got %d entries, want 1: %+v", len(all), all)
	}
	return all[0]
}

func TestLevels(t *testing.T) {
	tests := []struct {
		name string
		log  func(hclog.Logger)
		want zapcore.Level
	}{
		{"Trace", func(l hclog.Logger) { l.Trace("m") }, zapcore.DebugLevel},
		{"Debug", func(l hclog.Logger) { l.Debug("m") }, zapcore.DebugLevel},
		{"Info", func(l hclog.Logger) { l.Info("m") }, zapcore.InfoLevel},
		{"Warn", func(l hclog.Logger) { l.Warn("m") }, zapcore.WarnLevel},
		{"Error", func(l hclog.Logger) { l.Error("m") }, zapcore.ErrorLevel},
		{"Log(Trace)", func(l hclog.Logger) { l.Log(hclog.Trace, "m") }, zapcore.DebugLevel},
		{"Log(Debug)", func(l hclog.Logger) { l.Log(hclog.Debug, "m") }, zapcore.DebugLevel},
		{"Log(NoLevel)", func(l hclog.Logger) { l.Log(hclog.NoLevel, "m") }, zapcore.InfoLevel},
		{"Log(Info)", func(l hclog.Logger) { l.Log(hclog.Info, "m") }, zapcore.InfoLevel},
		{"Log(Warn)", func(l hclog.Logger) { l.Log(hclog.Warn, "m") }, zapcore.WarnLevel},
		{"Log(Error)", func(l hclog.Logger) { l.Log(hclog.Error, "m") }, zapcore.ErrorLevel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, logs := observed(zapcore.DebugLevel, "")
			tt.log(l)
			e := only(t, logs)
			if e.Level != tt.want || e.Message != "m" {
				t.Errorf("got %v %q, want %v %q", e.Level, e.Message, tt.want, "m")
			}
		})
	}
}

func TestLevelsThatEmitNothing(t *testing.T) {
	l, logs := observed(zapcore.DebugLevel, "")
	l.Log(hclog.Off, "m")
	l.Log(hclog.Level(42), "m")
	l.Log(hclog.Level(-1), "m")
	if n := logs.Len(); n != 0 {
		t.Errorf("got %d entries, want 0: %+v", n, logs.All())
	}
}

func TestDisabledLevelsAreDropped(t *testing.T) {
	l, logs := observed(zapcore.WarnLevel, "")
	l.Trace("t")
	l.Debug("d")
	l.Info("i")
	l.Warn("w")
	if got := only(t, logs).Message; got != "w" {
		t.Errorf("got %q, want only the Warn message", got)
	}
}

func TestFields(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name string
		args []any
		want map[string]any
	}{
		{"none", nil, map[string]any{}},
		{"pairs", []any{"a", 1, "b", "x", "c", true},
			map[string]any{"a": int64(1), "b": "x", "c": true}},
		{"error", []any{"error", errBoom}, map[string]any{"error": "boom"}},
		{"odd", []any{"a", 1, "dangling"},
			map[string]any{"a": int64(1), hclog.MissingKey: "dangling"}},
		{"lone value", []any{"dangling"}, map[string]any{hclog.MissingKey: "dangling"}},
		{"non-string keys", []any{42, "v", nil, "n", 1.5, 2},
			map[string]any{"42": "v", "<nil>": "n", "1.5": int64(2)}},
		{"nil value", []any{"a", nil}, map[string]any{"a": nil}},
		{"hclog formats", []any{
			"hex", hclog.Hex(255), "oct", hclog.Octal(8), "bin", hclog.Binary(5),
			"quote", hclog.Quote(`a"b`), "fmt", hclog.Fmt("%d-%s", 1, "z"),
			"badfmt", hclog.Format{1, 2}, "emptyfmt", hclog.Format{},
		}, map[string]any{
			"hex": "0xff", "oct": "010", "bin": "0b101", "quote": `"a\"b"`,
			"fmt": "1-z", "badfmt": "1 2", "emptyfmt": "",
		}},
		{"stacktrace", []any{"a", 1, hclog.CapturedStacktrace("trace")},
			map[string]any{"a": int64(1), "stacktrace": "trace"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, logs := observed(zapcore.DebugLevel, "")
			l.Info("m", tt.args...)
			if got := only(t, logs).ContextMap(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("fields = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestWith(t *testing.T) {
	base, logs := observed(zapcore.DebugLevel, "raft")
	l := base.With("a", 1).With("b", 2, "a", 3).With(7, "seven", "odd")

	wantImplied := []any{"a", 3, "b", 2, "7", "seven", hclog.MissingKey, "odd"}
	if got := l.ImpliedArgs(); !reflect.DeepEqual(got, wantImplied) {
		t.Errorf("ImpliedArgs = %#v, want %#v", got, wantImplied)
	}
	l.ImpliedArgs()[0] = "mutated"
	if got := l.ImpliedArgs()[0]; got != "a" {
		t.Errorf("ImpliedArgs shares its slice: key became %v", got)
	}
	if got := base.ImpliedArgs(); len(got) != 0 {
		t.Errorf("With changed its receiver: ImpliedArgs = %v", got)
	}
	if l.With() != l {
		t.Error("With() without args should return the receiver")
	}

	l.Warn("m", "c", 4)
	e := only(t, logs)
	want := map[string]any{"a": int64(3), "b": int64(2), "7": "seven",
		hclog.MissingKey: "odd", "c": int64(4)}
	if got := e.ContextMap(); !reflect.DeepEqual(got, want) {
		t.Errorf("fields = %#v, want %#v", got, want)
	}
	if e.LoggerName != "raft" {
		t.Errorf("LoggerName = %q, want %q", e.LoggerName, "raft")
	}

	base.Info("plain")
	if got := only(t, logs).ContextMap(); len(got) != 0 {
		t.Errorf("base logger picked up implied fields: %v", got)
	}
}

func TestNamed(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	zl := zap.New(core).Named("app")
	tests := []struct {
		name     string
		logger   hclog.Logger
		wantName string
		wantZap  string
	}{
		{"New", New(zl, "raft"), "raft", "app.raft"},
		{"New unnamed", New(zl, ""), "", "app"},
		{"Named", New(zl, "raft").Named("snap"), "raft.snap", "app.raft.snap"},
		{"Named twice", New(zl, "raft").Named("a").Named("b"), "raft.a.b", "app.raft.a.b"},
		{"Named on unnamed", New(zl, "").Named("x"), "x", "app.x"},
		{"Named empty", New(zl, "raft").Named(""), "raft", "app.raft"},
		{"ResetNamed", New(zl, "raft").Named("a").ResetNamed("b"), "b", "app.b"},
		{"ResetNamed empty", New(zl, "raft").ResetNamed(""), "", "app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.logger.Name(); got != tt.wantName {
				t.Errorf("Name() = %q, want %q", got, tt.wantName)
			}
			tt.logger.Info("m")
			if got := only(t, logs).LoggerName; got != tt.wantZap {
				t.Errorf("zap name = %q, want %q", got, tt.wantZap)
			}
		})
	}
}

func TestNamedKeepsImpliedArgs(t *testing.T) {
	l, logs := observed(zapcore.DebugLevel, "raft")
	l.With("k", "v").Named("a").ResetNamed("b").Info("m")
	e := only(t, logs)
	if got := e.ContextMap(); !reflect.DeepEqual(got, map[string]any{"k": "v"}) {
		t.Errorf("fields = %v, want k=v", got)
	}
	if e.LoggerName != "b" {
		t.Errorf("LoggerName = %q, want b", e.LoggerName)
	}
}

func TestLevelQueries(t *testing.T) {
	type is struct{ trace, debug, info, warn, error bool }
	tests := []struct {
		name   string
		logger hclog.Logger
		want   is
		level  hclog.Level
	}{
		{"debug", New(zap.New(observerCore(zapcore.DebugLevel)), ""), is{true, true, true, true, true}, hclog.Trace},
		{"info", New(zap.New(observerCore(zapcore.InfoLevel)), ""), is{false, false, true, true, true}, hclog.Info},
		{"warn", New(zap.New(observerCore(zapcore.WarnLevel)), ""), is{false, false, false, true, true}, hclog.Warn},
		{"error", New(zap.New(observerCore(zapcore.ErrorLevel)), ""), is{false, false, false, false, true}, hclog.Error},
		{"dpanic", New(zap.New(observerCore(zapcore.DPanicLevel)), ""), is{}, hclog.Off},
		{"nop", New(zap.NewNop(), ""), is{}, hclog.Off},
		{"nil", New(nil, "raft"), is{}, hclog.Off},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.logger
			got := is{l.IsTrace(), l.IsDebug(), l.IsInfo(), l.IsWarn(), l.IsError()}
			if got != tt.want {
				t.Errorf("Is* = %+v, want %+v", got, tt.want)
			}
			l.SetLevel(hclog.Trace) // documented no-op
			if got := l.GetLevel(); got != tt.level {
				t.Errorf("GetLevel() = %v, want %v", got, tt.level)
			}
		})
	}
}

func observerCore(min zapcore.Level) zapcore.Core {
	core, _ := observer.New(min)
	return core
}

func TestGetLevelFollowsAtomicLevel(t *testing.T) {
	lvl := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	core, logs := observer.New(lvl)
	l := New(zap.New(core), "")
	if got := l.GetLevel(); got != hclog.Info {
		t.Fatalf("GetLevel() = %v, want Info", got)
	}
	l.Debug("dropped")
	lvl.SetLevel(zapcore.DebugLevel)
	if got := l.GetLevel(); got != hclog.Trace {
		t.Errorf("GetLevel() after zap change = %v, want Trace", got)
	}
	l.Debug("kept")
	if got := only(t, logs).Message; got != "kept" {
		t.Errorf("got %q, want %q", got, "kept")
	}
}

func TestNilLoggerDiscards(t *testing.T) {
	l := New(nil, "raft")
	l.Error("m", "a", 1, "odd")
	l.StandardLogger(nil).Print("m")
	if _, err := l.StandardWriter(nil).Write([]byte("m\n")); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func TestStandardLogger(t *testing.T) {
	l, logs := observed(zapcore.DebugLevel, "raft")
	std := l.With("k", "v").StandardLogger(nil)
	std.Printf("hello %d", 1)
	e := only(t, logs)
	if e.Level != zapcore.InfoLevel || e.Message != "hello 1" || e.LoggerName != "raft" {
		t.Errorf("got %v %q from %q, want info %q from raft", e.Level, e.Message, e.LoggerName, "hello 1")
	}
	if got := e.ContextMap(); !reflect.DeepEqual(got, map[string]any{"k": "v"}) {
		t.Errorf("fields = %v, want k=v", got)
	}
}

func TestStandardWriter(t *testing.T) {
	type line struct {
		level zapcore.Level
		msg   string
	}
	tests := []struct {
		name  string
		opts  *hclog.StandardLoggerOptions
		input string
		want  []line
	}{
		{"nil opts", nil, "[WARN] x\n", []line{{zapcore.InfoLevel, "[WARN] x"}}},
		{"lines", nil, "one\r\n\n  \ntwo  \n\n", []line{
			{zapcore.InfoLevel, "one"}, {zapcore.InfoLevel, "two"}}},
		{"empty", nil, "\n", nil},
		{"infer", &hclog.StandardLoggerOptions{InferLevels: true},
			"[TRACE] t\n[DEBUG] d\n[INFO] i\n[WARN] w\n[ERROR] e\n[ERR] e2\nplain\n",
			[]line{
				{zapcore.DebugLevel, "t"}, {zapcore.DebugLevel, "d"},
				{zapcore.InfoLevel, "i"}, {zapcore.WarnLevel, "w"},
				{zapcore.ErrorLevel, "e"}, {zapcore.ErrorLevel, "e2"},
				{zapcore.InfoLevel, "plain"},
			}},
		{"infer with timestamp", &hclog.StandardLoggerOptions{
			InferLevels: true, InferLevelsWithTimestamp: true},
			"2024/01/02 15:04:05 [WARN] w\n", []line{{zapcore.WarnLevel, "w"}}},
		{"timestamp ignored without infer", &hclog.StandardLoggerOptions{
			InferLevelsWithTimestamp: true},
			"2024/01/02 [WARN] w\n", []line{{zapcore.InfoLevel, "2024/01/02 [WARN] w"}}},
		{"force", &hclog.StandardLoggerOptions{ForceLevel: hclog.Error, InferLevels: true},
			"[DEBUG] d\nplain\n", []line{
				{zapcore.ErrorLevel, "d"}, {zapcore.ErrorLevel, "plain"}}},
		{"force off", &hclog.StandardLoggerOptions{ForceLevel: hclog.Off}, "x\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, logs := observed(zapcore.DebugLevel, "")
			n, err := l.StandardWriter(tt.opts).Write([]byte(tt.input))
			if err != nil || n != len(tt.input) {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(tt.input))
			}
			var got []line
			for _, e := range logs.All() {
				got = append(got, line{e.Level, e.Message})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCallerIsTheLoggingCode checks that a zap logger with AddCaller points
// at the code that called the hclog method, not at this package.
func TestCallerIsTheLoggingCode(t *testing.T) {
	l, logs := observed(zapcore.DebugLevel, "", zap.AddCaller())
	l.Info("info")
	l.Log(hclog.Warn, "log")
	l.With("a", 1).Named("n").Error("derived")
	l.StandardLogger(nil).Print("std")
	_, _ = l.StandardWriter(nil).Write([]byte("writer\n"))
	for _, e := range logs.All() {
		if !e.Caller.Defined || filepath.Base(e.Caller.File) != "hclogzap_test.go" {
			t.Errorf("%q: caller = %s, want this test file", e.Message, e.Caller)
		}
	}
	if n := logs.Len(); n != 5 {
		t.Errorf("got %d entries, want 5", n)
	}
}

func TestDisabledLevelAllocs(t *testing.T) {
	l, logs := observed(zapcore.InfoLevel, "raft")
	l = l.With("node", "n1")
	n := 7
	tests := []struct {
		name string
		log  func()
	}{
		{"Debug", func() { l.Debug("replicating", "peer", "n2", "odd") }},
		{"Trace", func() { l.Trace("heartbeat", "peer", "n2", "index", n) }},
		{"Log", func() { l.Log(hclog.Debug, "replicating", "peer", "n2", "index", n) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The variadic slice may escape to the heap; converting the
			// arguments to fields must not happen at all.
			if allocs := testing.AllocsPerRun(1000, tt.log); allocs > 1 {
				t.Errorf("disabled call allocates %v times, want at most 1", allocs)
			}
		})
	}
	if logs.Len() != 0 {
		t.Errorf("disabled levels emitted %d entries", logs.Len())
	}
}

func BenchmarkDisabled(b *testing.B) {
	l, _ := observed(zapcore.InfoLevel, "raft")
	b.ReportAllocs()
	for b.Loop() {
		l.Debug("replicating", "peer", "n2", "index", 7)
	}
}

func BenchmarkEnabled(b *testing.B) {
	l := New(zap.New(zapcore.NewCore(
		zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(discard{}), zapcore.DebugLevel)), "raft")
	b.ReportAllocs()
	for b.Loop() {
		l.Debug("replicating", "peer", "n2", "index", 7)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestRaftLogsThroughZap runs a one-node raft cluster with the bridge as its
// logger and checks that raft's own messages arrive in zap.
func TestRaftLogsThroughZap(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.Logger = New(zap.New(core), "raft")
	// Sub-second timeouts so that a single node elects itself quickly.
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond

	store := raft.NewInmemStore()
	addr, trans := raft.NewInmemTransport("n1")
	r, err := raft.NewRaft(conf, &nopFSM{}, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatalf("NewRaft: %v", err)
	}
	defer func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		_ = trans.Close()
	}()
	boot := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
	if err := r.BootstrapCluster(boot).Error(); err != nil {
		t.Fatalf("BootstrapCluster: %v", err)
	}
	waitLeader(t, r)

	entry := logs.FilterMessage("entering leader state")
	if entry.Len() == 0 {
		t.Fatalf("no %q entry among %d raft log entries", "entering leader state", logs.Len())
	}
	e := entry.All()[0]
	if e.Level != zapcore.InfoLevel || e.LoggerName != "raft" {
		t.Errorf("got %v from %q, want info from raft", e.Level, e.LoggerName)
	}
	if _, ok := e.ContextMap()["leader"]; !ok {
		t.Errorf("leader field missing: %v", e.ContextMap())
	}
}

// waitLeader polls until r leads, failing after a bounded wait.
func waitLeader(t *testing.T, r *raft.Raft) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 5s; state %v", r.State())
		}
		select {
		case <-r.LeaderCh():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// nopFSM is a raft.FSM that ignores everything.
type nopFSM struct{}

func (*nopFSM) Apply(*raft.Log) any                 { return nil }
func (*nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("not supported") }
func (*nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }
