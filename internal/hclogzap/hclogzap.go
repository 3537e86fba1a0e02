// Package hclogzap bridges [hclog.Logger], the logging interface of
// hashicorp/raft, to a [zap.Logger], so that raft never writes to stderr on
// its own and its lines carry the same encoding, sinks and level rules as
// the rest of a distkit program.
//
// The zap logger is the single source of truth for levels: hclog's Trace and
// Debug both become zap Debug, and [hclog.Logger.SetLevel] is ignored. Change
// verbosity with the zap logger's own level (for example a
// [zap.AtomicLevel]); the Is… guards and GetLevel follow it.
//
// A Logger returned by [New] is safe for concurrent use, like the zap logger
// it wraps. Every method that derives a new logger (With, Named, ResetNamed)
// leaves the receiver unchanged.
package hclogzap

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// callerSkip is the number of frames between the code that called an hclog
// method and zap's Check: the public method (Info, Log, Write…) and the
// shared emit helper. With it, a zap logger built with [zap.AddCaller]
// reports raft's file and line rather than this package's.
const callerSkip = 2

// stdLoggerSkip is the number of extra frames that [log.Logger] adds between
// its caller and our writer's Write: Print… (or Output) and log.Logger.output.
const stdLoggerSkip = 2

// logger implements [hclog.Logger] on top of a [zap.Logger].
//
// All fields are set at construction and never modified, which is what makes
// the logger safe for concurrent use without locks.
type logger struct {
	// root is the caller's zap logger with the caller skip applied, without
	// our name or implied fields. ResetNamed starts again from it.
	root *zap.Logger
	// zl is root named with name and carrying the implied fields; every
	// message goes through it.
	zl *zap.Logger
	// name is the hclog name, kept because zap does not expose a logger's
	// name and hclog's Name must return it.
	name string
	// implied holds the With key/value pairs: string keys, even length, each
	// key at most once.
	implied []any
}

var _ hclog.Logger = (*logger)(nil)

// New returns an [hclog.Logger] that writes to l, for use as raft.Config's
// Logger (or anything else that wants an hclog.Logger).
//
// name becomes both the hclog name (see Name) and a zap name segment, added
// with [zap.Logger.Named] after any name l already has; "" adds none. A nil l
// means [zap.NewNop]: everything is discarded and every Is… guard reports
// false.
//
// Levels map as follows: Trace and Debug to zap Debug, Info to Info, Warn to
// Warn, Error to Error. Key/value arguments become [zap.Any] fields; see the
// Log method for how malformed argument lists are handled.
func New(l *zap.Logger, name string) hclog.Logger {
	if l == nil {
		l = zap.NewNop()
	}
	root := l.WithOptions(zap.AddCallerSkip(callerSkip))
	return newLogger(root, name, nil)
}

// newLogger builds a logger from its parts, applying name and implied to
// root once so that each message pays for neither.
func newLogger(root *zap.Logger, name string, implied []any) *logger {
	zl := root
	if name != "" {
		zl = zl.Named(name)
	}
	if len(implied) > 0 {
		zl = zl.With(fields(implied)...)
	}
	return &logger{root: root, zl: zl, name: name, implied: implied}
}

// Log emits msg at the zap level that level maps to: Trace and Debug to
// Debug; NoLevel and Info to Info; Warn to Warn; Error to Error. Off, and any
// value hclog does not define, emits nothing.
//
// args are alternating keys and values. A key that is not a string is
// converted with [fmt.Sprint]; a final value without a key is logged under
// [hclog.MissingKey] ("EXTRA_VALUE_AT_END"), as hclog itself does. Nothing
// here panics on a malformed list, because a logging call must never take
// raft down.
//
// When zap would drop the message, Log returns before converting args, so a
// disabled call costs a level check.
func (l *logger) Log(level hclog.Level, msg string, args ...any) {
	zlvl, ok := zapLevel(level)
	if !ok {
		return
	}
	l.emit(zlvl, msg, args)
}

// Trace emits msg at zap's Debug level; zap has no Trace level. See Log for
// args.
func (l *logger) Trace(msg string, args ...any) { l.emit(zapcore.DebugLevel, msg, args) }

// Debug emits msg at zap's Debug level. See Log for args.
func (l *logger) Debug(msg string, args ...any) { l.emit(zapcore.DebugLevel, msg, args) }

// Info emits msg at zap's Info level. See Log for args.
func (l *logger) Info(msg string, args ...any) { l.emit(zapcore.InfoLevel, msg, args) }

// Warn emits msg at zap's Warn level. See Log for args.
func (l *logger) Warn(msg string, args ...any) { l.emit(zapcore.WarnLevel, msg, args) }

// Error emits msg at zap's Error level. See Log for args.
func (l *logger) Error(msg string, args ...any) { l.emit(zapcore.ErrorLevel, msg, args) }

// emit is the single path to zap. It must be called directly by the public
// method that the user called, so that callerSkip stays right.
func (l *logger) emit(lvl zapcore.Level, msg string, args []any) {
	// Check before fields: a disabled level returns nil here without
	// allocating, and the argument conversion below is skipped.
	if ce := l.zl.Check(lvl, msg); ce != nil {
		ce.Write(fields(args)...)
	}
}

// IsTrace reports whether Trace messages would be emitted, which is whether
// the zap logger enables Debug.
func (l *logger) IsTrace() bool { return l.zl.Core().Enabled(zapcore.DebugLevel) }

// IsDebug reports whether the zap logger enables Debug.
func (l *logger) IsDebug() bool { return l.zl.Core().Enabled(zapcore.DebugLevel) }

// IsInfo reports whether the zap logger enables Info.
func (l *logger) IsInfo() bool { return l.zl.Core().Enabled(zapcore.InfoLevel) }

// IsWarn reports whether the zap logger enables Warn.
func (l *logger) IsWarn() bool { return l.zl.Core().Enabled(zapcore.WarnLevel) }

// IsError reports whether the zap logger enables Error.
func (l *logger) IsError() bool { return l.zl.Core().Enabled(zapcore.ErrorLevel) }

// ImpliedArgs returns a copy of the key/value pairs added by With, keys as
// strings, in the order each key was first added.
func (l *logger) ImpliedArgs() []any { return slices.Clone(l.implied) }

// With returns a logger that adds args to every message, on top of the
// receiver's own implied arguments. A key given again replaces the earlier
// value, as in hclog. args follow the rules of Log: non-string keys are
// converted with [fmt.Sprint], and a trailing value without a key is kept
// under [hclog.MissingKey].
func (l *logger) With(args ...any) hclog.Logger {
	if len(args) == 0 {
		return l
	}
	implied := slices.Clone(l.implied)
	for i := 0; i < len(args); i += 2 {
		var k string
		var v any
		if i+1 == len(args) {
			k, v = hclog.MissingKey, args[i]
		} else {
			k, v = key(args[i]), args[i+1]
		}
		if j := indexOfKey(implied, k); j >= 0 {
			implied[j+1] = v
		} else {
			implied = append(implied, k, v)
		}
	}
	return newLogger(l.root, l.name, implied)
}

// indexOfKey returns the position of key k in the pair list kv, or -1.
func indexOfKey(kv []any, k string) int {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == k {
			return i
		}
	}
	return -1
}

// Name returns the hclog name: the one given to New, extended by Named or
// replaced by ResetNamed. It does not include any name the zap logger given
// to New already had.
func (l *logger) Name() string { return l.name }

// Named returns a logger whose name is the receiver's name and name joined
// with ".", matching how both hclog and zap nest names. An empty name returns
// the receiver unchanged. Implied arguments are kept.
func (l *logger) Named(name string) hclog.Logger {
	if name == "" {
		return l
	}
	if l.name != "" {
		name = l.name + "." + name
	}
	return newLogger(l.root, name, l.implied)
}

// ResetNamed returns a logger named name, discarding the receiver's name; ""
// removes it. The zap logger's own name, from before New, is kept. Implied
// arguments are kept.
func (l *logger) ResetNamed(name string) hclog.Logger {
	return newLogger(l.root, name, l.implied)
}

// SetLevel does nothing: the zap logger's level rules decide what is
// emitted, so that one setting governs raft and distkit alike. To change
// raft's verbosity, change the zap logger's level (for example with a
// [zap.AtomicLevel]).
func (l *logger) SetLevel(hclog.Level) {}

// GetLevel returns the lowest hclog level whose messages the zap logger
// currently emits: Trace when zap enables Debug (since Trace is sent at
// Debug), then Info, Warn, Error, or Off when zap enables none of them.
func (l *logger) GetLevel() hclog.Level {
	core := l.zl.Core()
	switch {
	case core.Enabled(zapcore.DebugLevel):
		return hclog.Trace
	case core.Enabled(zapcore.InfoLevel):
		return hclog.Info
	case core.Enabled(zapcore.WarnLevel):
		return hclog.Warn
	case core.Enabled(zapcore.ErrorLevel):
		return hclog.Error
	default:
		return hclog.Off
	}
}

// StandardLogger returns a [log.Logger] that writes through this logger,
// for libraries that only accept the standard library's type. It adds no
// prefix or timestamp of its own (zap does that). Each line is emitted at
// Info unless opts asks otherwise; see StandardWriter. opts may be nil.
func (l *logger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.writer(opts, stdLoggerSkip), "", 0)
}

// StandardWriter returns an [io.Writer] that emits every non-empty line of
// each Write as one message, for [log.SetOutput] and similar sinks. Write
// never fails and does not buffer: a line split across two Writes becomes
// two messages.
//
// With a nil or zero opts, lines go out at Info. With opts.ForceLevel set,
// they go out at that level, with a leading "[LEVEL]" tag removed. With
// opts.InferLevels, a leading "[TRACE]", "[DEBUG]", "[INFO]", "[WARN]",
// "[ERROR]" or "[ERR]" tag picks the level and is removed; untagged lines
// go out at Info. opts.InferLevelsWithTimestamp additionally skips a leading
// timestamp (digits, spaces and ":/.+-TZ") before looking for the tag.
func (l *logger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return l.writer(opts, 0)
}

// writer builds the StandardWriter, with extraSkip frames between the
// writer's caller and the code whose location zap should report.
func (l *logger) writer(opts *hclog.StandardLoggerOptions, extraSkip int) *stdWriter {
	w := &stdWriter{zl: l.zl}
	if extraSkip > 0 {
		w.zl = l.zl.WithOptions(zap.AddCallerSkip(extraSkip))
	}
	if opts != nil {
		w.opts = *opts
	}
	return w
}

// stdWriter is the io.Writer behind StandardWriter and StandardLogger.
type stdWriter struct {
	zl   *zap.Logger
	opts hclog.StandardLoggerOptions
}

// Write emits each non-empty line of p and always reports success, because
// a failed log write must not turn into an error in the code that logged.
func (w *stdWriter) Write(p []byte) (int, error) {
	rest := bytes.TrimRight(p, " \t\r\n")
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimRight(line, " \t\r")
		if len(line) == 0 {
			continue
		}
		w.emit(string(line))
	}
	return len(p), nil
}

// emit logs one line at the level the options pick. It must be called
// directly by Write, so that the caller skip stays right.
func (w *stdWriter) emit(line string) {
	level := hclog.Info
	switch {
	case w.opts.ForceLevel != hclog.NoLevel:
		_, line = pickLevel(line)
		level = w.opts.ForceLevel
	case w.opts.InferLevels:
		if w.opts.InferLevelsWithTimestamp {
			line = strings.TrimLeft(line, "0123456789 \t:/.+-TZ")
		}
		level, line = pickLevel(line)
	}
	zlvl, ok := zapLevel(level)
	if !ok {
		return
	}
	if ce := w.zl.Check(zlvl, line); ce != nil {
		ce.Write()
	}
}

// pickLevel recognises the level tags that hclog's own standard-library
// adapter recognises, and returns the level and the line without its tag.
// An untagged line is Info.
func pickLevel(line string) (hclog.Level, string) {
	for _, t := range []struct {
		tag   string
		level hclog.Level
	}{
		{"[TRACE]", hclog.Trace},
		{"[DEBUG]", hclog.Debug},
		{"[INFO]", hclog.Info},
		{"[WARN]", hclog.Warn},
		{"[ERROR]", hclog.Error},
		{"[ERR]", hclog.Error},
	} {
		if rest, ok := strings.CutPrefix(line, t.tag); ok {
			return t.level, strings.TrimSpace(rest)
		}
	}
	return hclog.Info, line
}

// zapLevel maps an hclog level to the zap level it is emitted at, and
// reports false for levels that emit nothing (Off and undefined values).
// NoLevel means "unspecified" in hclog, whose default level is Info.
func zapLevel(level hclog.Level) (zapcore.Level, bool) {
	switch level {
	case hclog.Trace, hclog.Debug:
		return zapcore.DebugLevel, true
	case hclog.NoLevel, hclog.Info:
		return zapcore.InfoLevel, true
	case hclog.Warn:
		return zapcore.WarnLevel, true
	case hclog.Error:
		return zapcore.ErrorLevel, true
	default:
		return zapcore.InvalidLevel, false
	}
}

// fields converts hclog's alternating key/value list to zap fields. It
// never panics: see Log for the rules on malformed lists.
func fields(args []any) []zap.Field {
	if len(args) == 0 {
		return nil
	}
	fs := make([]zap.Field, 0, (len(args)+1)/2)
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			// A lone trailing value: hclog uses this slot for a captured
			// stack trace, and otherwise reports the value without a key.
			if st, ok := args[i].(hclog.CapturedStacktrace); ok {
				fs = append(fs, zap.String("stacktrace", string(st)))
			} else {
				fs = append(fs, field(hclog.MissingKey, args[i]))
			}
			break
		}
		fs = append(fs, field(key(args[i]), args[i+1]))
	}
	return fs
}

// key converts an hclog key, which should be a string but is not checked by
// the compiler, to a field name.
func key(k any) string {
	if s, ok := k.(string); ok {
		return s
	}
	return fmt.Sprint(k)
}

// field converts one value. hclog's formatting wrappers are rendered the way
// hclog renders them, so that they read the same in zap's output; anything
// else is left to [zap.Any].
func field(k string, v any) zap.Field {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) > 0 {
			if format, ok := v[0].(string); ok {
				return zap.String(k, fmt.Sprintf(format, v[1:]...))
			}
		}
		return zap.String(k, fmt.Sprint(v...))
	case hclog.Hex:
		return zap.String(k, "0x"+strconv.FormatUint(uint64(v), 16))
	case hclog.Octal:
		return zap.String(k, "0"+strconv.FormatUint(uint64(v), 8))
	case hclog.Binary:
		return zap.String(k, "0b"+strconv.FormatUint(uint64(v), 2))
	case hclog.Quote:
		return zap.String(k, strconv.Quote(string(v)))
	case hclog.CapturedStacktrace:
		return zap.String(k, string(v))
	default:
		return zap.Any(k, v)
	}
}
