package membership

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/version"
)

func TestVersionChecks(t *testing.T) {
	v := func(minor string) *version.Info {
		return &version.Info{Major: "1", Minor: minor, GitVersion: "v1." + minor + ".0"}
	}
	for _, tc := range []struct {
		hub, member *version.Info
		want        string // in the error; "" for none
	}{
		{v("37"), v("37"), ""},
		{v("37"), v("34"), ""},
		{v("34"), v("37"), ""},
		{v("37"), v("33"), "member: Kubernetes v1.33.0 is too old: the fleet supports 1.34 to 1.37"},
		{v("33"), v("34"), "hub: Kubernetes v1.33.0 is too old"},
		{v("38+"), v("34"), "more than 3 minor versions apart"},
		{&version.Info{Major: "2", Minor: "0"}, v("37"), `hub: unknown Kubernetes major version "2"`},
	} {
		err := errors.Join(checkVersion("hub", tc.hub), checkVersion("member", tc.member), checkSkew(tc.hub, tc.member))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("hub %s member %s: %v", tc.hub.Minor, tc.member.Minor, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("hub %s member %s: want %q, got %v", tc.hub.Minor, tc.member.Minor, tc.want, err)
		}
	}
}

func TestLoopbackHost(t *testing.T) {
	for server, want := range map[string]bool{
		"https://127.0.0.1:6443":            true,
		"https://127.1.2.3":                 true,
		"https://[::1]:6443":                true,
		"https://localhost:6443":            true,
		"https://LOCALHOST.":                true,
		"127.0.0.1:6443":                    true,
		"https://hub-control-plane:6443":    false,
		"https://10.0.0.1:6443":             false,
		"https://hub.example.com":           false,
		"https://localhost.example.com:443": false,
	} {
		if _, got := loopbackHost(server); got != want {
			t.Errorf("loopbackHost(%q) = %v, want %v", server, got, want)
		}
	}
}
