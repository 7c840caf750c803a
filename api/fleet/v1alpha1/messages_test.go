package v1alpha1

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		n    int
		want string
	}{
		{name: "short", in: "abc", n: 10, want: "abc"},
		{name: "exact", in: "abcdef", n: 6, want: "abcdef"},
		{name: "cut", in: "abcdefghij", n: 8, want: "abcd" + " …"},
		{name: "rune boundary", in: strings.Repeat("é", 10), n: 9, want: "éé" + " …"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Bounded(tc.in, tc.n)
			if got != tc.want {
				t.Errorf("Bounded(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
			if len(got) > tc.n || !utf8.ValidString(got) {
				t.Errorf("Bounded(%q, %d) = %q: %d bytes, valid UTF-8 %v", tc.in, tc.n, got, len(got), utf8.ValidString(got))
			}
		})
	}
}

func TestNamespaceDenied(t *testing.T) {
	for _, tc := range []struct {
		ns    string
		extra []string
		want  bool
	}{
		{ns: "team-a", want: false},
		{ns: "kube-system", want: true},
		{ns: "kube-anything", want: true},
		{ns: "jobset-fleet-system", want: true},
		{ns: DefaultInventoryNamespace, want: true},
		{ns: MemberNamespace("m1"), want: true},
		{ns: "team-a", extra: []string{"team-*"}, want: true},
		{ns: "team-a", extra: []string{"team-b"}, want: false},
		{ns: "kube-system", extra: []string{"other"}, want: true},
	} {
		if got := NamespaceDenied(tc.ns, tc.extra); got != tc.want {
			t.Errorf("NamespaceDenied(%q, %q) = %v, want %v", tc.ns, tc.extra, got, tc.want)
		}
	}
}
