package parity_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

const (
	// Paths from this package's directory.
	repoRoot     = "../../.."
	ourCRD       = repoRoot + "/config/crd/bases/jobset.x-k8s.io_jobsets.yaml"
	upstreamMod  = repoRoot + "/hack/upstream"
	upstreamCRD  = "config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml" // in upstream's module
	differences  = "crd_differences.yaml"
	upstreamPath = "sigs.k8s.io/jobset"
)

// difference is one entry of crd_differences.yaml: a place where our CRD is
// meant to differ from upstream's, and why.
type difference struct {
	// Path is where the comparison reports the difference, e.g.
	// "schema.status.fleet" or "printerColumns[Cluster]". A "*" matches any
	// run of characters, so one entry can cover a subtree.
	Path string `json:"path"`
	// What, when set, must start the comparison's description of the
	// difference (e.g. "only in ours"), so that a subtree entry cannot hide
	// other kinds of differences under it.
	What string `json:"what,omitempty"`
	// Reason says why the difference is intended; it must not be empty.
	Reason string `json:"reason"`
}

func (d difference) matches(path, what string) bool {
	ok, err := filepath.Match(strings.ReplaceAll(d.Path, "[", "\\["), path)
	return err == nil && ok && strings.HasPrefix(what, d.What)
}

// TestCRDMatchesUpstream compares the JobSet CRD we generate with upstream
// JobSet v0.12.0's, field by field: names, scope, versions, subresources,
// printer columns, and every schema node's type, format, defaults, enums,
// bounds, patterns, required fields, list/map semantics and CEL rules.
// Descriptions are not compared: the API documentation is our own text.
func TestCRDMatchesUpstream(t *testing.T) {
	ours := readCRD(t, ourCRD)
	upstream := readCRD(t, filepath.Join(upstreamModuleDir(t), upstreamCRD))

	found := map[string]string{}
	for _, d := range compareCRDs(ours, upstream) {
		found[d.path] = d.what
	}

	data, err := os.ReadFile(differences)
	if err != nil {
		t.Fatal(err)
	}
	var intended []difference
	if err := yaml.UnmarshalStrict(data, &intended); err != nil {
		t.Fatalf("parsing %s: %v", differences, err)
	}
	var paths []string
	for p := range found {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	used := make([]bool, len(intended))
	for _, p := range paths {
		i := slices.IndexFunc(intended, func(d difference) bool { return d.matches(p, found[p]) })
		if i < 0 {
			t.Errorf("%s: %s\n\tfix the API markers (then `make manifests`), or list it in %s with the reason", p, found[p], differences)
			continue
		}
		used[i] = true
	}
	for i, d := range intended {
		if strings.TrimSpace(d.Reason) == "" {
			t.Errorf("%s: %s has no reason", differences, d.Path)
		}
		if !used[i] {
			t.Errorf("%s lists %s, but the CRDs do not differ there any more: remove the entry", differences, d.Path)
		}
	}
}

func readCRD(t *testing.T, path string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(data, crd); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	return crd
}

// upstreamModuleDir returns where the Go module cache holds upstream JobSet
// at the version hack/upstream pins, downloading it through the module proxy
// if needed.
func upstreamModuleDir(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", upstreamPath)
	cmd.Dir = upstreamMod
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go mod download %s in %s: %v\n%s%s", upstreamPath, upstreamMod, err, out, stderr)
	}
	var mod struct{ Dir, Version string }
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatalf("go mod download output: %v\n%s", err, out)
	}
	if mod.Version != "v0.12.0" {
		t.Fatalf("hack/upstream pins %s %s, want v0.12.0", upstreamPath, mod.Version)
	}
	return mod.Dir
}

type diff struct{ path, what string }

// compareCRDs lists every difference between ours and upstream's, each at
// the shallowest path where it shows (a property only one side has is one
// difference, not one per nested field).
func compareCRDs(ours, upstream *apiextensionsv1.CustomResourceDefinition) []diff {
	var diffs []diff
	add := func(path, format string, args ...any) {
		diffs = append(diffs, diff{path: path, what: fmt.Sprintf(format, args...)})
	}
	if ours.Name != upstream.Name {
		add("name", "ours %q, upstream %q", ours.Name, upstream.Name)
	}
	o, u := ours.Spec, upstream.Spec
	compareValues(add, "spec.group", o.Group, u.Group)
	compareValues(add, "spec.scope", o.Scope, u.Scope)
	compareValues(add, "spec.conversion", o.Conversion, u.Conversion)
	compareValues(add, "spec.preserveUnknownFields", o.PreserveUnknownFields, u.PreserveUnknownFields)
	// Names field by field, so that an extra short name is its own entry.
	on, un := o.Names, u.Names
	compareValues(add, "names.plural", on.Plural, un.Plural)
	compareValues(add, "names.singular", on.Singular, un.Singular)
	compareValues(add, "names.kind", on.Kind, un.Kind)
	compareValues(add, "names.listKind", on.ListKind, un.ListKind)
	compareValues(add, "names.shortNames", on.ShortNames, un.ShortNames)
	compareValues(add, "names.categories", on.Categories, un.Categories)

	if len(o.Versions) != 1 || len(u.Versions) != 1 {
		add("versions", "ours has %d versions, upstream %d; the comparison expects exactly one", len(o.Versions), len(u.Versions))
		return diffs
	}
	ov, uv := o.Versions[0], u.Versions[0]
	compareValues(add, "version.name", ov.Name, uv.Name)
	compareValues(add, "version.served", ov.Served, uv.Served)
	compareValues(add, "version.storage", ov.Storage, uv.Storage)
	compareValues(add, "version.deprecated", ov.Deprecated, uv.Deprecated)
	compareValues(add, "version.deprecationWarning", ov.DeprecationWarning, uv.DeprecationWarning)
	compareValues(add, "version.subresources", ov.Subresources, uv.Subresources)
	compareValues(add, "version.selectableFields", ov.SelectableFields, uv.SelectableFields)
	comparePrinterColumns(add, ov.AdditionalPrinterColumns, uv.AdditionalPrinterColumns)
	compareSchemas(add, "schema", ov.Schema.OpenAPIV3Schema, uv.Schema.OpenAPIV3Schema)
	return diffs
}

func compareValues(add func(path, format string, args ...any), path string, ours, upstream any) {
	if !reflect.DeepEqual(ours, upstream) {
		add(path, "ours %s, upstream %s", compact(ours), compact(upstream))
	}
}

// comparePrinterColumns compares columns by name, and the order of the
// columns both have (kubectl prints them in order).
func comparePrinterColumns(add func(path, format string, args ...any), ours, upstream []apiextensionsv1.CustomResourceColumnDefinition) {
	index := func(cols []apiextensionsv1.CustomResourceColumnDefinition) map[string]apiextensionsv1.CustomResourceColumnDefinition {
		m := map[string]apiextensionsv1.CustomResourceColumnDefinition{}
		for _, c := range cols {
			c.Description = "" // our own text
			m[c.Name] = c
		}
		return m
	}
	om, um := index(ours), index(upstream)
	var common []string
	for _, c := range ours {
		path := "printerColumns[" + c.Name + "]"
		u, ok := um[c.Name]
		switch {
		case !ok:
			add(path, "only in ours (%s)", c.JSONPath)
		default:
			common = append(common, c.Name)
			compareValues(add, path, om[c.Name], u)
		}
	}
	var upstreamOrder []string
	for _, c := range upstream {
		if _, ok := om[c.Name]; !ok {
			add("printerColumns["+c.Name+"]", "only in upstream (%s)", c.JSONPath)
			continue
		}
		upstreamOrder = append(upstreamOrder, c.Name)
	}
	if !slices.Equal(common, upstreamOrder) {
		add("printerColumns", "order: ours %v, upstream %v", common, upstreamOrder)
	}
}

// compareSchemas compares one schema node (without its description and
// children) and recurses into the children both sides have.
func compareSchemas(add func(path, format string, args ...any), path string, ours, upstream *apiextensionsv1.JSONSchemaProps) {
	switch {
	case ours == nil && upstream == nil:
		return
	case upstream == nil:
		add(path, "only in ours")
		return
	case ours == nil:
		add(path, "only in upstream")
		return
	}
	if d := cmp.Diff(shallow(upstream), shallow(ours)); d != "" {
		add(path, "schema differs (-upstream +ours):\n%s", d)
	}

	for _, name := range unionKeys(ours.Properties, upstream.Properties) {
		o, oOK := ours.Properties[name]
		u, uOK := upstream.Properties[name]
		compareSchemas(add, path+"."+name, ptrIf(o, oOK), ptrIf(u, uOK))
	}
	compareSchemas(add, path+"[]", itemsSchema(ours.Items), itemsSchema(upstream.Items))
	compareSchemas(add, path+"{}", additionalSchema(ours.AdditionalProperties), additionalSchema(upstream.AdditionalProperties))
	for _, combo := range []struct {
		name string
		o, u []apiextensionsv1.JSONSchemaProps
	}{{"allOf", ours.AllOf, upstream.AllOf}, {"anyOf", ours.AnyOf, upstream.AnyOf}, {"oneOf", ours.OneOf, upstream.OneOf}} {
		for i := range max(len(combo.o), len(combo.u)) {
			var o, u *apiextensionsv1.JSONSchemaProps
			if i < len(combo.o) {
				o = &combo.o[i]
			}
			if i < len(combo.u) {
				u = &combo.u[i]
			}
			compareSchemas(add, fmt.Sprintf("%s.%s[%d]", path, combo.name, i), o, u)
		}
	}
	compareSchemas(add, path+".not", ours.Not, upstream.Not)
}

// shallow is a schema node as JSON, without its description and without
// the children compareSchemas walks on its own. What remains — type,
// format, default, enum, bounds, pattern, required, nullable, x-kubernetes-*
// (list type and keys, CEL validations, embedded resource, int-or-string,
// preserve-unknown-fields) — is compared as a whole. Property names stay
// visible through "required" and the recursion.
func shallow(s *apiextensionsv1.JSONSchemaProps) map[string]any {
	c := s.DeepCopy()
	c.Description = ""
	c.Properties = nil
	c.Items = nil
	c.AllOf, c.AnyOf, c.OneOf, c.Not = nil, nil, nil, nil
	if c.AdditionalProperties != nil {
		// Keep whether extra properties are allowed; the schema recurses.
		c.AdditionalProperties = &apiextensionsv1.JSONSchemaPropsOrBool{Allows: c.AdditionalProperties.Allows}
	}
	data, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(data, &m); err != nil {
		panic(err)
	}
	return m
}

func itemsSchema(i *apiextensionsv1.JSONSchemaPropsOrArray) *apiextensionsv1.JSONSchemaProps {
	if i == nil {
		return nil
	}
	return i.Schema
}

func additionalSchema(a *apiextensionsv1.JSONSchemaPropsOrBool) *apiextensionsv1.JSONSchemaProps {
	if a == nil {
		return nil
	}
	return a.Schema
}

func unionKeys[V any](a, b map[string]V) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func ptrIf(s apiextensionsv1.JSONSchemaProps, ok bool) *apiextensionsv1.JSONSchemaProps {
	if !ok {
		return nil
	}
	return &s
}

func compact(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(data)
}
