package apicount

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// ReqKey classifies an API request: verb (get, list, watch, create,
// update, patch, delete, deletecollection) and resource ("jobs",
// "jobsets/status"; "-" for non-resource paths such as discovery).
type ReqKey struct{ Verb, Resource string }

// Write reports whether the request changes state.
func (k ReqKey) Write() bool {
	switch k.Verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

// Counts are request counts by kind.
type Counts map[ReqKey]int64

func (c Counts) Minus(base Counts) Counts {
	out := Counts{}
	for k, v := range c {
		if d := v - base[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func (c Counts) Add(o Counts) Counts {
	out := maps.Clone(c)
	if out == nil {
		out = Counts{}
	}
	for k, v := range o {
		out[k] += v
	}
	return out
}

func (c Counts) Total() (all, writes int64) {
	for k, v := range c {
		all += v
		if k.Write() {
			writes += v
		}
	}
	return all, writes
}

// OfVerb sums the counts of one verb (e.g. "watch").
func (c Counts) OfVerb(verb string) int64 {
	var n int64
	for k, v := range c {
		if k.Verb == verb {
			n += v
		}
	}
	return n
}

// WritesString lists the writes by kind, largest first, with how many of
// them failed (from failed, may be nil), e.g. "create jobs 4000, create
// namespaces 1000 (1000 failed)".
func (c Counts) WritesString(failed Counts) string {
	type kv struct {
		k ReqKey
		v int64
	}
	var list []kv
	for k, v := range c {
		if k.Write() {
			list = append(list, kv{k, v})
		}
	}
	slices.SortFunc(list, func(a, b kv) int {
		if a.v != b.v {
			return int(b.v - a.v)
		}
		return strings.Compare(a.k.Verb+a.k.Resource, b.k.Verb+b.k.Resource)
	})
	var parts []string
	for _, e := range list {
		part := fmt.Sprintf("%s %s %d", e.k.Verb, e.k.Resource, e.v)
		if f := failed[e.k]; f > 0 {
			part += fmt.Sprintf(" (%d failed)", f)
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// BytesString lists the largest byte counts by kind divided by n (per
// JobSet), largest first, at most limit of them, e.g. "watch
// jobsetdispatches 2.1 KiB, patch jobsetdispatches/status 1.0 KiB".
func (c Counts) BytesString(n, limit int) string {
	keys := slices.Collect(maps.Keys(c))
	slices.SortFunc(keys, func(a, b ReqKey) int {
		if c[a] != c[b] {
			return int(c[b] - c[a])
		}
		return strings.Compare(a.Verb+a.Resource, b.Verb+b.Resource)
	})
	var parts []string
	for _, k := range keys[:min(len(keys), limit)] {
		parts = append(parts, fmt.Sprintf("%s %s %.1f KiB", k.Verb, k.Resource, float64(c[k])/float64(n)/1024))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Classify turns an apiserver request into a ReqKey, from its method and
// path (/api/v1/namespaces/ns/jobs/name/status, /apis/g/v/...).
func Classify(method, path, rawQuery string) ReqKey {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var rest []string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		rest = parts[3:]
	}
	if len(rest) == 0 {
		return ReqKey{Verb: strings.ToLower(method), Resource: "-"}
	}
	// namespaces/<ns>/<resource>... is a namespaced resource; namespaces
	// and namespaces/<name>[/status] are the namespaces resource itself.
	if rest[0] == "namespaces" && len(rest) >= 3 {
		rest = rest[2:]
	}
	resource := rest[0]
	named := len(rest) >= 2
	if len(rest) >= 3 {
		resource += "/" + rest[2]
	}
	var verb string
	switch method {
	case http.MethodGet:
		q, _ := url.ParseQuery(rawQuery)
		switch {
		case q.Get("watch") == "true" || q.Get("watch") == "1":
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
		if !named {
			verb = "deletecollection"
		}
	default:
		verb = strings.ToLower(method)
	}
	return ReqKey{Verb: verb, Resource: resource}
}
