package apicount

import "testing"

func TestClassify(t *testing.T) {
	cases := []struct {
		method, path, query string
		want                ReqKey
	}{
		{"POST", "/apis/batch/v1/namespaces/ns/jobs", "", ReqKey{"create", "jobs"}},
		{"GET", "/apis/batch/v1/jobs", "watch=true&resourceVersion=1", ReqKey{"watch", "jobs"}},
		{"GET", "/apis/batch/v1/namespaces/ns/jobs", "limit=500", ReqKey{"list", "jobs"}},
		{"GET", "/api/v1/namespaces/ns/services/s", "", ReqKey{"get", "services"}},
		{"PATCH", "/apis/jobset.x-k8s.io/v1alpha2/namespaces/ns/jobsets/js/status", "", ReqKey{"patch", "jobsets/status"}},
		{"PUT", "/apis/jobset.x-k8s.io/v1alpha2/namespaces/ns/jobsets/js/status", "", ReqKey{"update", "jobsets/status"}},
		{"POST", "/api/v1/namespaces", "", ReqKey{"create", "namespaces"}},
		{"GET", "/api/v1/namespaces/ns", "", ReqKey{"get", "namespaces"}},
		{"DELETE", "/apis/batch/v1/namespaces/ns/jobs", "", ReqKey{"deletecollection", "jobs"}},
		{"DELETE", "/apis/batch/v1/namespaces/ns/jobs/j", "", ReqKey{"delete", "jobs"}},
		{"GET", "/apis/batch/v1", "", ReqKey{"get", "-"}},
		{"GET", "/version", "", ReqKey{"get", "-"}},
	}
	for _, c := range cases {
		if got := Classify(c.method, c.path, c.query); got != c.want {
			t.Errorf("Classify(%s %s?%s) = %v, want %v", c.method, c.path, c.query, got, c.want)
		}
	}
}

func TestBytesString(t *testing.T) {
	c := Counts{{"watch", "jobsetdispatches"}: 4096, {"patch", "jobsetdispatches/status"}: 2048, {"create", "events"}: 1024}
	if got, want := c.BytesString(2, 2), "watch jobsetdispatches 2.0 KiB, patch jobsetdispatches/status 1.0 KiB"; got != want {
		t.Errorf("BytesString = %q, want %q", got, want)
	}
	if got := (Counts{}).BytesString(1, 8); got != "none" {
		t.Errorf("empty BytesString = %q, want none", got)
	}
}

func TestOfVerb(t *testing.T) {
	c := Counts{{"watch", "jobsets"}: 3, {"watch", "jobsetdispatches"}: 4, {"patch", "jobsets/status"}: 5}
	if got := c.OfVerb("watch"); got != 7 {
		t.Errorf("OfVerb(watch) = %d, want 7", got)
	}
	if got := c.OfVerb("get"); got != 0 {
		t.Errorf("OfVerb(get) = %d, want 0", got)
	}
}
