// Command argocd-lua runs an Argo CD resource health script the way an Argo CD application
// controller runs a health check configured in argocd-cm
// (`resource.customizations.health.<group>_<kind>`), so the script's tests fail wherever it
// would fail in Argo CD.
//
//	argocd-lua [-use-open-libs] SCRIPT OBJECT
//	argocd-lua -version
//
// SCRIPT is a health.lua; OBJECT is the resource as a JSON or YAML file (one document holding
// one object). On success it prints the health as one JSON line, {"status":…,"message":…}, and
// exits 0. A script that does not load, raises an error, runs longer than a second or returns
// something other than a table exits 1 with the reason on stderr; bad arguments or an unreadable
// object exit 2. hack/tools.sh builds it into the tools cache; tests/packaging.rs runs
// deploy/argocd/resource_customizations/ai.cxone.io/SkillTrainingJob/health_test.yaml with it.
//
// The runtime it reproduces (Argo CD's own Lua runtime, gopher-lua, a Lua 5.1):
//
//   - useOpenLibs=false, the argocd-cm default (`resource.customizations.useOpenLibs.<group>_<kind>`
//     unset): the state is created with gopher-lua's SkipOpenLibs, and only the libraries
//     `package`, base (`_G`: print, pairs, ipairs, tostring, tonumber, type, pcall, error,
//     require, ...) and `table` are opened. There is no `math`, no `string`, no `io`, no `debug`,
//     no `coroutine` and no `channel`. Without the string library strings have no metatable,
//     so method calls such as ("x"):upper() or s:sub(1, 2) fail as well.
//   - A reduced "safe" os with only `time` and `date` (no `clock`, `exit`, `execute`, `getenv`,
//     file functions, ...). Argo CD preloads it as module "os", so `require("os")` returns it.
//     Its opener registers those functions under the module name "table", which the table
//     library has already loaded, so that call adds nothing: there is no global `os`, and
//     `os.time()` without a `local os = require("os")` fails. This runner reproduces the outcome.
//   - useOpenLibs=true (-use-open-libs): gopher-lua's full standard library is opened first
//     (including the real os), then the same libraries as above on top of it.
//   - The object is the global `obj`, converted from its JSON form: objects and arrays become
//     tables (arrays from index 1), strings strings, booleans booleans, numbers Lua numbers, and
//     null becomes nil (the key is absent from its table).
//   - The script gets one second (a context deadline), then it is stopped.
//   - The returned table is read as {status, message}; a status that is not one of Healthy,
//     Progressing, Degraded, Suspended, Missing or Unknown yields Unknown with the message
//     "Lua returned an invalid health status", as Argo CD does.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// buildStamp is set by hack/tools.sh (-ldflags -X main.buildStamp=…) to the digest of this
// directory's sources; `-version` prints it so the cache check knows the binary is current.
var buildStamp = "dev"

// scriptTimeout is how long Argo CD lets a health script run.
const scriptTimeout = time.Second

// invalidHealthStatus is the message Argo CD reports for a status it does not know.
const invalidHealthStatus = "Lua returned an invalid health status"

var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

// health is what the runner prints.
type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// usageError marks bad arguments or input (exit 2) as opposed to a failing script (exit 1).
type usageError struct{ error }

func main() {
	flags := flag.NewFlagSet("argocd-lua", flag.ContinueOnError)
	flags.SetOutput(os.Stderr)
	openLibs := flags.Bool("use-open-libs", false,
		"open every gopher-lua library, as argocd-cm's resource.customizations.useOpenLibs.<group>_<kind>: \"true\" does")
	version := flags.Bool("version", false, "print the build stamp and exit")
	flags.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua [-use-open-libs] SCRIPT OBJECT\n       argocd-lua -version")
		flags.PrintDefaults()
	}
	if err := flags.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *version {
		fmt.Println("argocd-lua " + buildStamp)
		return
	}
	if flags.NArg() != 2 {
		flags.Usage()
		os.Exit(2)
	}
	h, err := run(flags.Arg(0), flags.Arg(1), *openLibs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua: "+err.Error())
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
	out, err := json.Marshal(h)
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua: "+err.Error())
		os.Exit(1)
	}
	fmt.Println(string(out))
}

func run(scriptPath, objectPath string, openLibs bool) (health, error) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return health{}, usageError{fmt.Errorf("cannot read the script: %w", err)}
	}
	obj, err := readObject(objectPath)
	if err != nil {
		return health{}, usageError{err}
	}
	return evaluate(string(script), filepath.Base(scriptPath), obj, openLibs)
}

// readObject reads one JSON or YAML document holding one object, with numbers as int64 when
// they are integers and float64 otherwise (as Kubernetes' unstructured decoding yields them).
func readObject(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the object: %w", err)
	}
	switch n, err := documents(raw); {
	case err != nil:
		return nil, fmt.Errorf("%s: not valid JSON or YAML: %w", path, err)
	case n == 0:
		return nil, fmt.Errorf("%s: holds no object", path)
	case n > 1:
		return nil, fmt.Errorf("%s: holds %d YAML documents; give one object", path, n)
	}
	doc, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: not valid JSON or YAML: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var value any
	if err := dec.Decode(&value); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	obj, ok := value.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: the document is %s, not an object", path, jsonKind(value))
	}
	converted, err := numbers(obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return converted.(map[string]any), nil
}

// documents counts the YAML documents in raw that hold something.
func documents(raw []byte) (int, error) {
	dec := yamlv2.NewDecoder(bytes.NewReader(raw))
	n := 0
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if doc != nil {
			n++
		}
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func numbers(v any) (any, error) {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i, nil
		}
		f, err := t.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %s: %w", t, err)
		}
		return f, nil
	case map[string]any:
		for k, item := range t {
			c, err := numbers(item)
			if err != nil {
				return nil, err
			}
			t[k] = c
		}
		return t, nil
	case []any:
		for i, item := range t {
			c, err := numbers(item)
			if err != nil {
				return nil, err
			}
			t[i] = c
		}
		return t, nil
	default:
		return v, nil
	}
}

// newState builds the Lua state Argo CD runs a health script in (see the package comment).
func newState(openLibs bool) (*lua.LState, error) {
	// useOpenLibs=false -> SkipOpenLibs: no library at all until the ones below are opened.
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage}, // "package"; also provides require's loaders
		{lua.BaseLibName, lua.OpenBase},    // "": the global functions
		{lua.TabLibName, lua.OpenTable},    // "table"
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			l.Close()
			return nil, fmt.Errorf("opening library %q: %w", lib.name, err)
		}
	}
	// The safe os is only preloaded: require("os") returns it, the global `os` is left as it
	// is (nil unless -use-open-libs opened the real one).
	l.PreloadModule(lua.OsLibName, func(l *lua.LState) int {
		l.Push(l.SetFuncs(l.NewTable(), safeOS))
		return 1
	})
	return l, nil
}

// safeOS is the whole of the os library a health script can reach: the current time and
// formatted dates.
var safeOS = map[string]lua.LGFunction{
	"time": osTime,
	"date": osDate,
}

// osTime: os.time() is now in Unix seconds; os.time{year=…, month=…, day=…, hour=12, min=0,
// sec=0} is that local time.
func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	t := l.CheckTable(1)
	field := func(name string, def int) int {
		if n, ok := t.RawGetString(name).(lua.LNumber); ok {
			return int(n)
		}
		return def
	}
	at := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(at.Unix()))
	return 1
}

// osDate: os.date([format [, time]]); a leading "!" means UTC, "*t" returns a table, and the
// common strftime conversions are understood (others are kept as written).
func osDate(l *lua.LState) int {
	now := time.Now()
	format := "%c"
	if l.GetTop() >= 1 {
		format = l.CheckString(1)
	}
	if l.GetTop() >= 2 {
		now = time.Unix(l.CheckInt64(2), 0)
	}
	if strings.HasPrefix(format, "!") {
		now = now.UTC()
		format = format[1:]
	}
	if strings.HasPrefix(format, "*t") {
		t := l.NewTable()
		for k, v := range map[string]int{
			"year": now.Year(), "month": int(now.Month()), "day": now.Day(), "hour": now.Hour(),
			"min": now.Minute(), "sec": now.Second(), "wday": int(now.Weekday()) + 1, "yday": now.YearDay(),
		} {
			t.RawSetString(k, lua.LNumber(v))
		}
		t.RawSetString("isdst", lua.LFalse)
		l.Push(t)
		return 1
	}
	l.Push(lua.LString(strftime(now, format)))
	return 1
}

var strftimeLayouts = map[byte]string{
	'a': "Mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "Mon Jan  2 15:04:05 2006",
	'd': "02", 'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM",
	'S': "05", 'T': "15:04:05", 'x': "01/02/06", 'X': "15:04:05", 'y': "06", 'Y': "2006",
	'z': "-0700", 'Z': "MST",
}

func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		switch spec := format[i]; {
		case spec == '%':
			b.WriteByte('%')
		case spec == 'w':
			fmt.Fprint(&b, int(t.Weekday()))
		case spec == 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case strftimeLayouts[spec] != "":
			b.WriteString(t.Format(strftimeLayouts[spec]))
		default:
			b.WriteByte('%')
			b.WriteByte(spec)
		}
	}
	return b.String()
}

// toLua converts a decoded JSON value into the Lua value the script sees.
func toLua(l *lua.LState, v any) lua.LValue {
	switch t := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(t)
	case string:
		return lua.LString(t)
	case int64:
		return lua.LNumber(t)
	case float64:
		return lua.LNumber(t)
	case []any:
		arr := l.CreateTable(len(t), 0)
		for _, item := range t {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(t))
		for k, item := range t {
			tbl.RawSetString(k, toLua(l, item))
		}
		return tbl
	default:
		return lua.LNil
	}
}

func evaluate(script, name string, obj map[string]any, openLibs bool) (health, error) {
	l, err := newState(openLibs)
	if err != nil {
		return health{}, err
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	fn, err := l.Load(strings.NewReader(script), name)
	if err != nil {
		return health{}, fmt.Errorf("%s does not load: %w", name, err)
	}
	l.Push(fn)
	if err := l.PCall(0, lua.MultRet, nil); err != nil {
		if ctx.Err() != nil {
			return health{}, fmt.Errorf("%s ran longer than %s: %w", name, scriptTimeout, err)
		}
		return health{}, fmt.Errorf("%s failed: %w", name, err)
	}
	var ret lua.LValue = lua.LNil
	if l.GetTop() > 0 {
		ret = l.Get(-1)
	}
	tbl, ok := ret.(*lua.LTable)
	if !ok {
		return health{}, fmt.Errorf("%s: expect table output from Lua script, not %s", name, ret.Type())
	}
	encoded, err := tableJSON(tbl, map[*lua.LTable]bool{})
	if err != nil {
		return health{}, fmt.Errorf("%s returned a table that is not JSON: %w", name, err)
	}
	var h health
	if err := json.Unmarshal(encoded, &h); err != nil {
		return health{}, fmt.Errorf("%s returned %s: %w", name, encoded, err)
	}
	if !validStatuses[h.Status] {
		return health{Status: "Unknown", Message: invalidHealthStatus}, nil
	}
	return h, nil
}

// tableJSON encodes a returned table as JSON: a table with keys 1..n (or none) is an array,
// one with string keys an object; functions, other key types and cycles are errors.
func tableJSON(t *lua.LTable, seen map[*lua.LTable]bool) ([]byte, error) {
	if seen[t] {
		return nil, errors.New("a table contains itself")
	}
	seen[t] = true
	defer delete(seen, t)
	n := t.Len()
	strKeys := map[string]lua.LValue{}
	count := 0
	var keyErr error
	t.ForEach(func(k, v lua.LValue) {
		count++
		if s, ok := k.(lua.LString); ok {
			strKeys[string(s)] = v
		} else if _, ok := k.(lua.LNumber); !ok && keyErr == nil {
			keyErr = fmt.Errorf("a key of type %s", k.Type())
		}
	})
	if keyErr != nil {
		return nil, keyErr
	}
	var b bytes.Buffer
	if count == n {
		b.WriteByte('[')
		for i := 1; i <= n; i++ {
			if i > 1 {
				b.WriteByte(',')
			}
			item, err := valueJSON(t.RawGetInt(i), seen)
			if err != nil {
				return nil, err
			}
			b.Write(item)
		}
		b.WriteByte(']')
		return b.Bytes(), nil
	}
	if len(strKeys) != count {
		return nil, errors.New("a table is neither an array (keys 1..n) nor an object (string keys)")
	}
	keys := make([]string, 0, len(strKeys))
	for k := range strKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kj, _ := json.Marshal(k)
		b.Write(kj)
		b.WriteByte(':')
		item, err := valueJSON(strKeys[k], seen)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		b.Write(item)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func valueJSON(v lua.LValue, seen map[*lua.LTable]bool) ([]byte, error) {
	switch t := v.(type) {
	case *lua.LNilType:
		return []byte("null"), nil
	case lua.LBool:
		return json.Marshal(bool(t))
	case lua.LNumber:
		return json.Marshal(float64(t))
	case lua.LString:
		return json.Marshal(string(t))
	case *lua.LTable:
		return tableJSON(t, seen)
	default:
		return nil, fmt.Errorf("a value of type %s", v.Type())
	}
}
