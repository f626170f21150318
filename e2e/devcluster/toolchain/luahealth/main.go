// Command luahealth runs Argo CD resource health scripts the way Argo CD runs them.
//
// It follows util/lua/lua.go of Argo CD v3.2.0 (the contract, not a copy of its code):
//   - the engine is gopher-lua, the version Argo CD pins;
//   - without "open libs" only the package, base and table libraries are loaded, plus an os
//     table that holds nothing but time and date (also what `require("os")` returns); with
//     open libs (Argo CD's built-in scripts, or resource.customizations.useOpenLibs.<group_kind>
//     in argocd-cm) gopher-lua's standard libraries are opened first;
//   - the object is the global `obj`, its JSON numbers as Lua numbers, `actionParams` an
//     empty table; the script has one second;
//   - a returned table is encoded with gopher-json and read as {status, message}: an empty
//     table or nil is an empty health status, a status outside Healthy, Progressing,
//     Degraded, Suspended, Missing and Unknown becomes Unknown "Lua returned an invalid health
//     status"; any other return type is an error.
//
// Usage:
//
//	luahealth -script FILE [-open-libs] < objects   one JSON line per object
//	luahealth -argocd-cm FILE < objects             the script argocd-cm holds for each object's group/kind
//	luahealth -test DIR                             every health.lua below DIR against its health_test.yaml
//
// Objects come on stdin as a stream of JSON values or as one YAML document. Each result is a
// line {"status": ..., "message": ...}, or {"error": ...}; the exit status is 1 when any object
// failed (an error, no script, or in -test mode a result other than the expected one).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/yaml"
)

const invalidHealthStatus = "Lua returned an invalid health status"

// HealthStatus is gitops-engine's health.HealthStatus as JSON.
type HealthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// safeOs is the os table Argo CD exposes: only time and date, taken from gopher-lua's own os library.
func safeOs(l *lua.LState) *lua.LTable {
	scratch := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer scratch.Close()
	scratch.Push(scratch.NewFunction(lua.OpenOs))
	scratch.Call(0, 1)
	full := scratch.Get(-1).(*lua.LTable)
	out := l.NewTable()
	for _, name := range []string{"time", "date"} {
		fn := full.RawGetString(name).(*lua.LFunction)
		out.RawSetString(name, l.NewFunction(fn.GFunction))
	}
	return out
}

// decode turns a JSON-decoded value into a Lua value as Argo CD's decodeValue does.
func decode(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decode(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decode(l, item))
		}
		return tbl
	}
	return lua.LNil
}

// Execute runs script with obj as the global `obj` and reads the health status it returns.
func Execute(obj map[string]any, script string, openLibs bool) (*HealthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	osTable := safeOs(l)
	l.SetGlobal(lua.OsLibName, osTable)
	l.PreloadModule(lua.OsLibName, func(l *lua.LState) int { l.Push(osTable); return 1 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("actionParams", l.NewTable())
	l.SetGlobal("obj", decode(l, obj))
	if err := l.DoString(script); err != nil {
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = ""
			return nil, apiErr
		}
		return nil, err
	}
	ret := l.Get(-1)
	switch ret.Type() {
	case lua.LTTable:
		encoded, err := luajson.Encode(ret)
		if err != nil {
			return nil, err
		}
		hs := &HealthStatus{}
		if err := json.Unmarshal(encoded, hs); err != nil {
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) && typeErr.Value == "array" {
				return &HealthStatus{}, nil // an empty table encodes as []
			}
			return nil, err
		}
		if !validStatus[hs.Status] {
			return &HealthStatus{Status: "Unknown", Message: invalidHealthStatus}, nil
		}
		return hs, nil
	case lua.LTNil:
		return &HealthStatus{}, nil
	}
	return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
}

// toInt64 makes JSON integers int64 and other numbers float64, as apimachinery's decoder does.
func toInt64(value any) any {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = toInt64(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = toInt64(v[k])
		}
	}
	return value
}

func decodeJSON(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	return toInt64(obj).(map[string]any), nil
}

// readObjects reads a stream of JSON values, or else one YAML document.
func readObjects(r io.Reader) ([]map[string]any, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var out []map[string]any
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.UseNumber()
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); err == io.EOF {
				return out, nil
			} else if err != nil {
				return nil, err
			}
			out = append(out, toInt64(obj).(map[string]any))
		}
	}
	obj, err := yamlObject(data)
	if err != nil {
		return nil, err
	}
	return []map[string]any{obj}, nil
}

func yamlObject(data []byte) (map[string]any, error) {
	asJSON, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	return decodeJSON(asJSON)
}

// configMapKey is Argo CD's GetConfigMapKey: "group/Kind", or "Kind" for the core group.
func configMapKey(obj map[string]any) string {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	group := ""
	if i := strings.Index(apiVersion, "/"); i >= 0 {
		group = apiVersion[:i]
	}
	if group == "" {
		return kind
	}
	return group + "/" + kind
}

// Override is what argocd-cm says about one group/kind.
type Override struct {
	HealthLua   string
	UseOpenLibs bool
}

// overridesFromConfigMap reads the split keys resource.customizations.<type>.<group_kind> as
// Argo CD's settings manager does (health and useOpenLibs; other types are accepted and unused).
func overridesFromConfigMap(path string) (map[string]Override, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cm struct {
		Kind     string                `json:"kind"`
		Metadata struct{ Name string } `json:"metadata"`
		Data     map[string]string     `json:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		return nil, err
	}
	if cm.Kind != "ConfigMap" || cm.Metadata.Name != "argocd-cm" {
		return nil, fmt.Errorf("%s: not the argocd-cm ConfigMap (kind %q, name %q)", path, cm.Kind, cm.Metadata.Name)
	}
	out := map[string]Override{}
	for k, v := range cm.Data {
		if !strings.HasPrefix(k, "resource.customizations") {
			continue
		}
		parts := strings.SplitN(k, ".", 4)
		if len(parts) < 4 {
			if k == "resource.customizations" {
				return nil, fmt.Errorf("%s: the single resource.customizations key is not read here; use split keys", path)
			}
			continue
		}
		groupKind := strings.Split(parts[3], "_")
		var key string
		switch {
		case len(groupKind) == 2:
			key = groupKind[0] + "/" + groupKind[1]
		case len(groupKind) == 1 && parts[3] != "":
			key = parts[3]
		default:
			return nil, fmt.Errorf("group kind should be in format `resource.customizations.<type>.<group_kind>`, got %q", parts[3])
		}
		o := out[key]
		switch parts[2] {
		case "health":
			o.HealthLua = v
		case "useOpenLibs":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, err
			}
			o.UseOpenLibs = b
		case "actions", "ignoreDifferences", "ignoreResourceUpdates", "knownTypeFields":
		default:
			return nil, fmt.Errorf("resource customization type %s not supported", parts[2])
		}
		out[key] = o
	}
	return out, nil
}

type result struct {
	*HealthStatus
	Error string `json:"error,omitempty"`
}

func emit(enc *json.Encoder, hs *HealthStatus, err error) bool {
	if err != nil {
		_ = enc.Encode(result{HealthStatus: &HealthStatus{}, Error: err.Error()})
		return false
	}
	_ = enc.Encode(result{HealthStatus: hs})
	return true
}

// testCase is one entry of Argo CD's health_test.yaml.
type testCase struct {
	InputPath    string       `json:"inputPath"`
	HealthStatus HealthStatus `json:"healthStatus"`
}

// runTests does what Argo CD's TestLuaHealthScript does for every health.lua below root: each
// test's input object through the directory's script, open libs on, compared to the expectation.
func runTests(root string, enc *json.Encoder) (passed, failed int, err error) {
	var dirs []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "health.lua" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
		if err != nil {
			return passed, failed, err
		}
		data, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
		if err != nil {
			return passed, failed, err
		}
		var suite struct {
			Tests []testCase `json:"tests"`
		}
		if err := yaml.Unmarshal(data, &suite); err != nil {
			return passed, failed, fmt.Errorf("%s: %w", dir, err)
		}
		if len(suite.Tests) == 0 {
			return passed, failed, fmt.Errorf("%s/health_test.yaml has no tests", dir)
		}
		for _, tc := range suite.Tests {
			line := map[string]any{"dir": dir, "inputPath": tc.InputPath, "expected": tc.HealthStatus}
			input, err := os.ReadFile(filepath.Join(dir, tc.InputPath))
			var got *HealthStatus
			if err == nil {
				var obj map[string]any
				if obj, err = yamlObject(input); err == nil {
					got, err = Execute(obj, string(script), true)
				}
			}
			ok := err == nil && reflect.DeepEqual(*got, tc.HealthStatus)
			line["ok"] = ok
			if err != nil {
				line["error"] = err.Error()
			} else {
				line["got"] = got
			}
			_ = enc.Encode(line)
			if ok {
				passed++
			} else {
				failed++
			}
		}
	}
	return passed, failed, nil
}

func main() {
	scriptPath := flag.String("script", "", "health.lua to run over the objects on stdin")
	openLibs := flag.Bool("open-libs", false, "open Lua's standard libraries (Argo CD's useOpenLibs)")
	cmPath := flag.String("argocd-cm", "", "argocd-cm ConfigMap whose health scripts to run")
	testDir := flag.String("test", "", "run every health.lua below this directory against its health_test.yaml")
	flag.Parse()
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "luahealth: "+format+"\n", args...)
		os.Exit(2)
	}
	if *testDir != "" {
		passed, failed, err := runTests(*testDir, enc)
		if err != nil {
			fail("%v", err)
		}
		fmt.Fprintf(os.Stderr, "luahealth: %d passed, %d failed\n", passed, failed)
		if failed > 0 || passed == 0 {
			os.Exit(1)
		}
		return
	}
	if (*scriptPath == "") == (*cmPath == "") {
		fail("give one of -script, -argocd-cm or -test")
	}
	// scriptFor says which script and libraries apply to an object.
	var scriptFor func(obj map[string]any) (Override, error)
	if *cmPath != "" {
		overrides, err := overridesFromConfigMap(*cmPath)
		if err != nil {
			fail("%v", err)
		}
		scriptFor = func(obj map[string]any) (Override, error) {
			key := configMapKey(obj)
			if o, found := overrides[key]; found && o.HealthLua != "" {
				return o, nil
			}
			return Override{}, fmt.Errorf("argocd-cm has no health script for %s", key)
		}
	} else {
		script, err := os.ReadFile(*scriptPath)
		if err != nil {
			fail("%v", err)
		}
		scriptFor = func(map[string]any) (Override, error) {
			return Override{HealthLua: string(script), UseOpenLibs: *openLibs}, nil
		}
	}
	objs, err := readObjects(os.Stdin)
	if err != nil {
		fail("reading objects: %v", err)
	}
	ok := len(objs) > 0
	for _, obj := range objs {
		o, err := scriptFor(obj)
		var hs *HealthStatus
		if err == nil {
			hs, err = Execute(obj, o.HealthLua, o.UseOpenLibs)
		}
		ok = emit(enc, hs, err) && ok
	}
	if !ok {
		os.Exit(1)
	}
}
